// The sandbox side of egress, in a real sandbox: the bridge on 127.0.0.1:3128 relays to the
// proxy's unix socket with the right caller line; the agent gets the proxy and CA variables;
// the agent has no other way out (no route, no DNS) and cannot reach the proxy socket itself.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { SANDBOX_CA_BUNDLE } from "../../core/sandbox/plan.ts";
import { sandboxSkipReason, systemProgramSkip } from "./sandbox_skip.ts";
import { agentWorkdir, recordingProxy, runWithEgress } from "./sandbox_helpers.ts";

const skip = sandboxSkipReason();
function test(name: string, fn: () => Promise<void>, needs: string[] = []) {
  const reason = skip ?? systemProgramSkip(needs);
  if (reason) console.log(`skipping "${name}": ${reason}`);
  Deno.test({
    name: `egress sandbox: ${name}${reason ? ` (skipped: ${reason})` : ""}`,
    ignore: reason !== null,
    fn,
  });
}

function sha256(path: string): string {
  return createHash("sha256").update(Deno.readFileSync(path)).digest("hex");
}

async function withSandbox(
  script: string,
  check: (
    r: { code: number; stdout: string; stderr: string },
    p: Awaited<ReturnType<typeof recordingProxy>>,
  ) => void,
  opts: { caPem?: string } = {},
) {
  const proxy = await recordingProxy(opts);
  const workdir = await agentWorkdir();
  try {
    const r = await runWithEgress(proxy.endpoint, workdir, script);
    check(r, proxy);
  } finally {
    await proxy.close();
    await Deno.remove(workdir, { recursive: true });
  }
}

test("curl goes through the bridge and the caller line names curl", async () => {
  const curl = Deno.realPathSync("/usr/bin/curl");
  await withSandbox("curl -sS http://example.test/hello", (r, p) => {
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(p.requests, ["GET http://example.test/hello HTTP/1.1"]);
    assert.equal(p.callers.length, 1);
    assert.equal(p.callers[0].exe, curl);
    assert.equal(p.callers[0].sha256, sha256(curl));
    assert.ok(p.callers[0].pid > 1);
    // curl's parent is the agent's shell; the chain stops there (the stage is not named).
    assert.deepEqual(p.callers[0].ancestors, [Deno.realPathSync("/bin/sh")]);
    // The proxy's answer came back through the bridge.
    assert.match(r.stdout, /"exe":"\/usr\/bin\/curl"/);
  });
}, ["curl"]);

test("python3 (urllib, proxy from the environment) is named as python", async () => {
  const python = Deno.realPathSync("/usr/bin/python3");
  const script = `/usr/bin/python3 -c 'import urllib.request as u; ` +
    `print(u.urlopen("http://example.test/py").read().decode())'`;
  await withSandbox(script, (r, p) => {
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(p.requests, ["GET http://example.test/py HTTP/1.1"]);
    assert.equal(p.callers[0].exe, python);
    assert.equal(p.callers[0].sha256, sha256(python));
  });
}, ["python3"]);

test("node (http to the bridge, IPv4 and IPv6 loopback) is named as node", async () => {
  const node = Deno.realPathSync("/usr/bin/node");
  const js = `const http = require("http");
const get = (host, path) => new Promise((ok, fail) => http.get(
  { host, port: 3128, path: "http://example.test" + path }, (res) => {
    let b = ""; res.on("data", (d) => b += d); res.on("end", () => ok(b));
  }).on("error", fail));
(async () => { console.log(await get("127.0.0.1", "/v4")); console.log(await get("::1", "/v6")); })()
  .catch((e) => { console.error(e.message); process.exit(1); });`;
  await withSandbox(`/usr/bin/node -e '${js}'`, (r, p) => {
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(p.requests, [
      "GET http://example.test/v4 HTTP/1.1",
      "GET http://example.test/v6 HTTP/1.1",
    ]);
    for (const c of p.callers) assert.equal(c.exe, node);
  });
}, ["node"]);

test("two programs in one run are told apart", async () => {
  const curl = Deno.realPathSync("/usr/bin/curl");
  const python = Deno.realPathSync("/usr/bin/python3");
  const script =
    `curl -sS http://example.test/a && /usr/bin/python3 -c 'import urllib.request as u; ` +
    `u.urlopen("http://example.test/b").read()' && curl -sS http://example.test/c`;
  await withSandbox(script, (r, p) => {
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(p.callers.map((c) => c.exe), [curl, python, curl]);
  });
}, ["curl", "python3"]);

test("the agent gets proxy and CA variables; the CA bundle is read-only", async () => {
  const caPem = "-----BEGIN CERTIFICATE-----\nclawcage-test-ca\n-----END CERTIFICATE-----\n";
  const script = `env | sort; echo @@@; tail -n 3 "$SSL_CERT_FILE"; echo @@@;
    (echo x >> "$SSL_CERT_FILE") 2>/dev/null && echo WROTE || echo NOWRITE`;
  await withSandbox(script, (r) => {
    assert.equal(r.code, 0, r.stderr);
    const [envText, tail, write] = r.stdout.split("@@@\n");
    const env = Object.fromEntries(
      envText.trim().split("\n").map((
        l,
      ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]) {
      assert.equal(env[name], "http://127.0.0.1:3128");
      assert.equal(env[name.toLowerCase()], "http://127.0.0.1:3128");
    }
    assert.equal(env.NO_PROXY, "localhost,127.0.0.1,::1");
    assert.equal(env.no_proxy, "localhost,127.0.0.1,::1");
    for (
      const name of [
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "AWS_CA_BUNDLE",
        "DENO_CERT",
      ]
    ) assert.equal(env[name], SANDBOX_CA_BUNDLE);
    assert.equal(tail, caPem);
    assert.equal(write.trim(), "NOWRITE");
  }, { caPem });
});

test("the agent cannot reach the proxy socket or the runtime directory", async () => {
  // The agent tries the host path, every descriptor of every process it can see through
  // /proc (the stage's directory descriptor included), and lists /run.
  const py = `
import os, socket, glob, sys
reached = []
candidates = [sys.argv[1] + "/bridge/proxy.sock"]
for fd in glob.glob("/proc/[0-9]*/fd/*"):
    candidates.append(fd + "/proxy.sock")
for pid in glob.glob("/proc/[0-9]*"):
    candidates.append(pid + "/root" + sys.argv[1] + "/bridge/proxy.sock")
    # Without listing: the stage's descriptors by number.
    for fd in range(64):
        candidates.append(pid + "/fd/" + str(fd) + "/proxy.sock")
for path in candidates:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        reached.append(path)
    except OSError:
        pass
    s.close()
print("reached:", reached)
try:
    print("run:", sorted(os.listdir("/run")))
except OSError as e:
    print("run: unreadable", e.errno)
print("runtime dir exists:", os.path.exists(sys.argv[1]))
print("stage fds:", os.access("/proc/1/fd", os.R_OK))
`;
  const proxy = await recordingProxy();
  const workdir = await agentWorkdir();
  try {
    await Deno.writeTextFile(`${workdir}/probe.py`, py);
    const r = await runWithEgress(
      proxy.endpoint,
      workdir,
      `/usr/bin/python3 probe.py ${proxy.endpoint.runtimeDir}`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^reached: \[\]$/m);
    assert.doesNotMatch(r.stdout, /test-/);
    assert.match(r.stdout, /^stage fds: False$/m);
    assert.match(r.stdout, /^runtime dir exists: False$/m);
    assert.equal(proxy.callers.length, 0);
  } finally {
    await proxy.close();
    await Deno.remove(workdir, { recursive: true });
  }
}, ["python3"]);

test("direct connections and DNS fail; only the bridge answers", async () => {
  const py = `
import socket
def tcp(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(2)
    try:
        s.connect((host, port)); return "connected"
    except OSError as e:
        return type(e).__name__ + ":" + str(e.errno)
    finally:
        s.close()
for host, port in [("1.1.1.1", 443), ("10.0.0.1", 80), ("192.168.1.1", 80), ("169.254.169.254", 80), ("2606:4700::1111", 443), ("127.0.0.1", 22), ("127.0.0.1", 3128)]:
    print(host, port, tcp(host, port))
try:
    print("dns", socket.getaddrinfo("example.com", 443))
except OSError as e:
    print("dns failed", type(e).__name__)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print("udp socket created")
except OSError as e:
    print("udp denied", e.errno)
`;
  const proxy = await recordingProxy();
  const workdir = await agentWorkdir();
  try {
    await Deno.writeTextFile(`${workdir}/probe.py`, py);
    const r = await runWithEgress(proxy.endpoint, workdir, "/usr/bin/python3 probe.py");
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    for (const l of lines.slice(0, 5)) assert.match(l, / OSError:101$/, l); // ENETUNREACH
    assert.match(lines[5], /^127\.0\.0\.1 22 ConnectionRefusedError:111$/);
    assert.equal(lines[6], "127.0.0.1 3128 connected");
    assert.match(lines[7], /^dns failed/);
    assert.equal(lines[8], "udp denied 1");
  } finally {
    await proxy.close();
    await Deno.remove(workdir, { recursive: true });
  }
}, ["python3"]);

test("the bridge closes the client's connection when the proxy is gone (fail closed)", async () => {
  const proxy = await recordingProxy();
  const workdir = await agentWorkdir();
  try {
    await Deno.remove(`${proxy.endpoint.socketDir}/proxy.sock`);
    const r = await runWithEgress(
      proxy.endpoint,
      workdir,
      "curl -sS -o /dev/null -w '%{http_code}' http://example.test/; echo \" rc=$?\"",
    );
    assert.match(r.stdout, /^000 rc=(52|56)$/m, r.stdout + r.stderr);
  } finally {
    await proxy.close();
    await Deno.remove(workdir, { recursive: true });
  }
}, ["curl"]);
