// `clawcage policy ...` through the real CLI (a subprocess, as users run it).

import assert from "node:assert/strict";
import { cli } from "../helpers/cli.ts";
import { fixturePath } from "./helpers.ts";

const RULES = fixturePath("rules.yaml");
const POLICIES = new URL("../../policies/", import.meta.url).pathname;

async function tempPolicy(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(path, text);
  return path;
}

Deno.test("policy check: ok files exit 0, a bad one exits 1 with file:line:column", async () => {
  const ok = await cli(["policy", "check", RULES, `${POLICIES}healthcare.yaml`]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /rules\.yaml: ok \(3 entries, 4 endpoints\)/);
  const bad = await tempPolicy(
    "version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - host: a.example.com\n        port: 443\n        protocol: grpc\n",
  );
  const r = await cli(["policy", "check", RULES, bad]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr.trim(),
    `${bad}:7:19: network_policies.a.endpoints.0.protocol: protocol "grpc" is not supported yet (supported: rest, websocket, tcp)`,
  );
  const json = await cli(["policy", "check", "--json", bad]);
  assert.equal(json.code, 1);
  const out = JSON.parse(json.stdout);
  assert.equal(out.ok, false);
  assert.deepEqual(
    { line: out.files[0].problems[0].line, column: out.files[0].problems[0].column },
    { line: 7, column: 19 },
  );
  await Deno.remove(bad);
});

Deno.test("policy check: a missing file is one clear line", async () => {
  const r = await cli(["policy", "check", "/nonexistent/p.yaml"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr.trim(), /^\/nonexistent\/p\.yaml:0:0: cannot read policy: no such file$/);
});

Deno.test("policy explain: allow at connection level, with what the proxy must do", async () => {
  const r = await cli([
    "policy",
    "explain",
    RULES,
    "--binary",
    "/usr/bin/curl",
    "--host",
    "api.example.com",
    "--port",
    "443",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^allow\n/);
  assert.match(r.stdout, /entry: {2}example_api {2}rule: endpoints\[0\]/);
  assert.match(r.stdout, /inspect each request/);
});

Deno.test("policy explain: a denied request names the deny rule", async () => {
  const r = await cli([
    "policy",
    "explain",
    RULES,
    "--binary",
    "/usr/bin/curl",
    "--host",
    "api.example.com",
    "--port",
    "443",
    "--method",
    "GET",
    "--path",
    "/repos/private/x",
    "--json",
  ]);
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout);
  assert.equal(out.decision.verdict, "deny");
  assert.equal(out.decision.rule, "endpoints[0].deny_rules[0]");
  assert.equal(out.nearest.rule, "endpoints[0].deny_rules[0]");
});

Deno.test("policy explain: a denial shows the nearest rule and why it missed", async () => {
  const r = await cli([
    "policy",
    "explain",
    RULES,
    "--binary",
    "/usr/bin/curl",
    "--host",
    "api.example.com",
    "--port",
    "443",
    "--method",
    "POST",
    "--path",
    "/repos/a/b/issues",
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^deny\n/);
  assert.match(r.stdout, /nearest: entry example_api, endpoints\[0\]\.rules\[1\]/);
  assert.match(r.stdout, /- path \/repos\/a\/b\/issues does not match \/repos\/\*\/issues/);
  const typo = await cli([
    "policy",
    "explain",
    RULES,
    "--binary",
    "/usr/bin/curl",
    "--host",
    "api.exmaple.com",
    "--port",
    "443",
  ]);
  assert.match(typo.stdout, /- host api\.exmaple\.com does not match api\.example\.com/);
});

Deno.test("policy explain: usage mistakes exit 2 with one line", async () => {
  const r = await cli(["policy", "explain", RULES, "--host", "a.example.com", "--port", "443"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), "clawcage: policy explain: --binary is required");
  const p = await cli([
    "policy",
    "explain",
    RULES,
    "--binary",
    "/x",
    "--host",
    "h",
    "--port",
    "99999",
  ]);
  assert.equal(p.code, 2);
  assert.match(p.stderr, /--port must be 1-65535/);
  const u = await cli(["policy", "frobnicate"]);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /unknown subcommand "frobnicate"/);
});

Deno.test("policy diff: added, removed and changed access; exit 1 when different", async () => {
  const a = await tempPolicy(`version: 1
network_policies:
  api:
    endpoints:
      - {host: api.example.com, port: 443, protocol: rest, enforcement: enforce, access: read-only}
      - {host: old.example.com, port: 443}
    binaries: [{path: /usr/bin/curl}]
`);
  const b = await tempPolicy(`version: 1
filesystem_policy:
  read_write: [/data]
network_policies:
  api:
    endpoints:
      - {host: api.example.com, port: 443, protocol: rest, enforcement: enforce, access: full}
      - {host: new.example.com, port: 443}
    binaries: [{path: /usr/bin/curl}]
`);
  const r = await cli(["policy", "diff", a, b]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stdout,
    /^\+ \/usr\/bin\/curl -> new\.example\.com:443 {2}any traffic \(no inspection\) {2}\[api\]$/m,
  );
  assert.match(r.stdout, /^- \/usr\/bin\/curl -> old\.example\.com:443/m);
  assert.match(
    r.stdout,
    /^~ \/usr\/bin\/curl -> api\.example\.com:443 {2}rest read-only \(enforce\) {2}=> {2}rest full \(enforce\)$/m,
  );
  assert.match(r.stdout, /^~ filesystem_policy\.read_write: \+ \/data$/m);
  const json = JSON.parse((await cli(["policy", "diff", "--json", a, b])).stdout);
  assert.equal(json.same, false);
  assert.equal(json.added.length, 1);
  const same = await cli(["policy", "diff", a, a]);
  assert.equal(same.code, 0);
  assert.match(same.stdout, /no access changes/);
  await Deno.remove(a);
  await Deno.remove(b);
});

Deno.test("policy presets: list, --add, --tier, unknown names", async () => {
  const list = await cli(["policy", "presets", "--json"]);
  assert.equal(list.code, 0, list.stderr);
  const out = JSON.parse(list.stdout);
  assert.equal(out.presets.length, 11);
  assert.deepEqual(out.tiers.restricted, []);
  const add = await cli(["policy", "presets", "--add", "npm", "--add", "anthropic"]);
  assert.equal(add.code, 0, add.stderr);
  const merged = await tempPolicy(add.stdout);
  const check = await cli(["policy", "check", "--json", merged]);
  assert.equal(check.code, 0, check.stderr);
  assert.equal(JSON.parse(check.stdout).files[0].entries, 2);
  const explain = await cli([
    "policy",
    "explain",
    merged,
    "--binary",
    "/usr/bin/node",
    "--host",
    "api.anthropic.com",
    "--port",
    "443",
    "--method",
    "POST",
    "--path",
    "/v1/messages",
  ]);
  assert.equal(explain.code, 0, explain.stdout);
  const tier = await cli(["policy", "presets", "--tier", "open", "--json"]);
  assert.equal(JSON.parse(tier.stdout).presets.length, 11);
  const bad = await cli(["policy", "presets", "--add", "nmp"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown preset nmp/);
  await Deno.remove(merged);
});

Deno.test("policy check: warnings point at what probably does not mean what it says", async () => {
  const p = await tempPolicy(`version: 1
network_policies:
  audit_by_default:
    endpoints:
      - {host: a.example.com, port: 443, protocol: rest, access: read-only}
    binaries: [{path: /usr/bin/curl}]
  nobody:
    endpoints:
      - {host: b.example.com, port: 443}
`);
  const r = await cli(["policy", "check", p]);
  assert.equal(r.code, 0, "warnings do not fail the check");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 2, r.stderr);
  assert.match(lines[0], new RegExp(`^${p}:5:9: warning: .*enforcement defaults to audit`));
  assert.match(lines[1], new RegExp(`^${p}:8:5: warning: .*entry nobody lists no binaries`));
  const json = JSON.parse((await cli(["policy", "check", "--json", p])).stdout);
  assert.equal(json.files[0].warnings.length, 2);
  await Deno.remove(p);
});

Deno.test("policy presets: --tier onto your own --base keeps your entries and refuses clashes", async () => {
  const base = await tempPolicy(`# my agent
version: 1
network_policies:
  internal:
    endpoints:
      - {host: git.corp.example.com, port: 443, protocol: rest, enforcement: enforce, access: read-only}
    binaries: [{path: /usr/bin/git}]
`);
  const r = await cli(["policy", "presets", "--tier", "balanced", "--base", base]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^# my agent/);
  for (const name of ["internal:", "npm:", "anthropic:"]) assert.ok(r.stdout.includes(name), name);
  const clash = await tempPolicy("version: 1\nnetwork_policies:\n  npm:\n    endpoints: []\n");
  const c = await cli(["policy", "presets", "--add", "npm", "--base", clash]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /entry "npm" is also defined by/);
  await Deno.remove(base);
  await Deno.remove(clash);
});

Deno.test("policy check: warns when a deny rule /x/** leaves /x itself allowed", async () => {
  const p = await tempPolicy(`version: 1
network_policies:
  api:
    endpoints:
      - host: a.example.com
        port: 443
        protocol: rest
        enforcement: enforce
        access: full
        deny_rules:
          - {method: "*", path: "/admin/**"}
          - {method: "*", path: "/secret/**"}
          - {method: "*", path: "/secret"}
    binaries: [{path: /usr/bin/curl}]
`);
  const r = await cli(["policy", "check", p]);
  assert.equal(r.code, 0);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(
    lines[0],
    /:11:33: warning: .*deny rule \/admin\/\*\* does not cover \/admin itself/,
  );
  await Deno.remove(p);
});
