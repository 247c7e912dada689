// Credential placeholders: the policy section, loading secrets (env, 0600 files), and the proxy
// substituting them into headers of inspected requests to the bound host, refusing elsewhere.

import assert from "node:assert/strict";
import { join } from "node:path";
import { CredentialError, loadCredentials } from "../../core/policy/credentials.ts";
import { parsePolicy, PolicyError } from "../../core/policy/load.ts";
import { CredentialStore, hostMatches } from "../../core/egress/placeholders.ts";
import {
  curl,
  type Echo,
  hasCurl,
  httpsUpstream,
  httpUpstream,
  rawExchange,
  startProxy,
  testInspectionCa,
  upstreamPki,
} from "./helpers.ts";

Deno.test("credentials section: validated with file:line:column", () => {
  const ok = parsePolicy(
    "version: 1\ncredentials:\n  github:\n    env: GH_TOKEN\n    hosts: [api.github.com, '*.GitHub.com']\n    agent_env: GITHUB_TOKEN\n",
    "p.yaml",
  );
  assert.deepEqual(ok.credentials?.github.hosts, ["api.github.com", "*.github.com"]);
  assert.throws(
    () =>
      parsePolicy(
        "version: 1\ncredentials:\n  gh:\n    env: A\n    file: /x\n    hosts: [a.com]\n",
        "p.yaml",
      ),
    (e: unknown) =>
      e instanceof PolicyError && /p\.yaml:\d+:\d+: .*exactly one of env or file/.test(e.message),
  );
  assert.throws(
    () => parsePolicy("version: 1\ncredentials:\n  gh:\n    env: A\n    hosts: []\n", "p.yaml"),
    /at least one host/,
  );
  assert.throws(
    () =>
      parsePolicy(
        "version: 1\ncredentials:\n  gh:\n    env: A\n    hosts: [a.com]\n    secret: x\n",
        "p.yaml",
      ),
    PolicyError,
  );
});

Deno.test("loading secrets: env, 0600 file, clear errors otherwise", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const good = join(dir, "good.token");
    Deno.writeTextFileSync(good, "s3cret-file\n", { mode: 0o600 });
    Deno.chmodSync(good, 0o600);
    const loose = join(dir, "loose.token");
    Deno.writeTextFileSync(loose, "x");
    Deno.chmodSync(loose, 0o644);
    const creds = loadCredentials(
      {
        a: { env: "A_TOKEN", hosts: ["a.test"], agent_env: "A_TOKEN" },
        b: { file: good, hosts: ["b.test"] },
      },
      (n) => n === "A_TOKEN" ? "s3cret-env" : undefined,
    );
    assert.equal(creds[0].secret, "s3cret-env");
    assert.equal(creds[1].secret, "s3cret-file");
    assert.match(creds[0].placeholder, /^clawcage-placeholder-a-[0-9a-f]{24}$/);
    assert.ok(!creds[0].placeholder.includes("s3cret"));
    assert.deepEqual(new CredentialStore(creds).agentEnv(), { A_TOKEN: creds[0].placeholder });
    assert.throws(
      () => loadCredentials({ b: { file: loose, hosts: ["b.test"] } }),
      (e: unknown) => e instanceof CredentialError && /mode 644.*chmod 600/.test(e.message),
    );
    assert.throws(
      () => loadCredentials({ a: { env: "NOPE_NOT_SET_X", hosts: ["a.test"] } }, () => undefined),
      /credentials\.a: environment variable NOPE_NOT_SET_X is not set/,
    );
    assert.throws(
      () => loadCredentials({ a: { env: "A", hosts: ["a.test"] } }, () => "bad\r\nheader"),
      /printable ASCII/,
    );
    assert.throws(
      () => loadCredentials({ a: { file: join(dir, "missing"), hosts: ["a.test"] } }),
      /cannot read .*ENOENT/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("host patterns: exact and first-label wildcard only", () => {
  assert.ok(hostMatches("api.github.com", "api.github.com"));
  assert.ok(hostMatches("*.github.com", "api.github.com"));
  assert.ok(!hostMatches("*.github.com", "github.com"));
  assert.ok(!hostMatches("*.github.com", "a.b.github.com"));
  assert.ok(!hostMatches("*.github.com", "evilgithub.com"));
});

const ignore = !hasCurl;
if (ignore) console.log("skipping placeholder proxy tests: curl not installed");

Deno.test({
  name: "proxy: placeholder replaced for the bound host over inspected HTTPS, refused elsewhere",
  ignore,
  async fn() {
    const pki = await upstreamPki(["api.test", "other.test"]);
    const ca = await testInspectionCa();
    const dir = Deno.makeTempDirSync();
    const caFile = ca.writeCert(dir);
    const secure = await httpsUpstream(pki.cert, pki.key);
    const plain = await httpUpstream();
    const [cred] = loadCredentials(
      { api: { env: "T", hosts: ["api.test"] } },
      () => "the-real-secret",
    );
    const ph = cred.placeholder;
    // api.test is an L4 rule (no request rules): the bound credential forces inspection.
    const p = await startProxy([
      { host: "api.test", port: secure.port },
      { host: "other.test", port: secure.port, methods: ["GET"] },
      { host: "other.test", port: plain.port },
      { host: "api.test", port: plain.port },
    ], {
      inspection: { ca, upstreamCa: [pki.caPem] },
      credentials: new CredentialStore([cred]),
    });
    try {
      const ok = await curl(p.url, [
        "--cacert",
        caFile,
        "-D",
        "-",
        "-H",
        `Authorization: Bearer ${ph}`,
        `https://api.test:${secure.port}/user`,
      ]);
      assert.equal(ok.status, 200, ok.stderr);
      const echo = JSON.parse(ok.body.slice(ok.body.indexOf("{"))) as Echo;
      assert.equal(echo.headers.authorization, "Bearer the-real-secret");
      // The upstream echoed the secret in a response header: the agent sees the placeholder.
      assert.match(ok.body, new RegExp(`x-echo-auth: Bearer ${ph}`, "i"));
      assert.doesNotMatch(ok.body.slice(0, ok.body.indexOf("{")), /the-real-secret/);

      const elsewhere = await curl(p.url, [
        "--cacert",
        caFile,
        "-H",
        `Authorization: Bearer ${ph}`,
        `https://other.test:${secure.port}/`,
      ]);
      assert.equal(elsewhere.status, 403);
      assert.match(JSON.parse(elsewhere.body).reason, /may only be sent in headers to api\.test/);
      assert.equal(JSON.parse(elsewhere.body).rule, "credentials.api");

      const plainOther = await rawExchange(
        p.port,
        `GET http://other.test:${plain.port}/ HTTP/1.1\r\nHost: x\r\nX-Key: ${ph}\r\nConnection: close\r\n\r\n`,
      );
      assert.match(plainOther, /^HTTP\/1.1 403[\s\S]*credentials\.api/);
      const plainBound = await rawExchange(
        p.port,
        `GET http://api.test:${plain.port}/ HTTP/1.1\r\nHost: x\r\nX-Key: ${ph}\r\nConnection: close\r\n\r\n`,
      );
      assert.match(plainBound, /^HTTP\/1.1 403[\s\S]*only over HTTPS/);
      const inUrl = await rawExchange(
        p.port,
        `GET http://api.test:${plain.port}/?key=${ph} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      assert.match(inUrl, /^HTTP\/1.1 403[\s\S]*request line/);
    } finally {
      await p.close();
      await secure.close();
      await plain.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
