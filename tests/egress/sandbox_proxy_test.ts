// End to end: a real sandbox, the stage's bridge, the real egress proxy, a loopback upstream.
// Decisions by binary reach the proxy from the caller line; rootless mode goes straight to the
// proxy's loopback port (which identifies callers itself) and Landlock refuses every other port.

import assert from "node:assert/strict";
import type { Decision, DecisionRequest } from "../../core/policy/decision.ts";
import { landlockAbi } from "../helpers/host.ts";
import { sandboxSkipReason, systemProgramSkip } from "./sandbox_skip.ts";
import { agentWorkdir, runThroughProxy } from "./sandbox_helpers.ts";
import { httpsUpstream, upstreamPki } from "./helpers.ts";

const skip = sandboxSkipReason() ?? systemProgramSkip(["curl", "python3"]);
function test(name: string, fn: () => Promise<void>, extraSkip: string | null = null) {
  const reason = skip ?? extraSkip;
  if (reason) console.log(`skipping "${name}": ${reason}`);
  Deno.test({
    name: `egress sandbox+proxy: ${name}${reason ? ` (skipped: ${reason})` : ""}`,
    ignore: reason !== null,
    fn,
  });
}

const CURL = Deno.realPathSync("/usr/bin/curl");

/** Allows only curl to upstream.test (on loopback, so allowed_ips must cover 127.0.0.1). */
function curlOnly(asked: DecisionRequest[]) {
  return (req: DecisionRequest): Promise<Decision> => {
    asked.push(req);
    const base = { inspect: false, tlsSkip: false, allowedIps: ["127.0.0.1/32"] };
    if (req.host !== "upstream.test") {
      return Promise.resolve({ ...base, verdict: "deny", reason: `no entry allows ${req.host}` });
    }
    if (req.binary !== CURL) {
      return Promise.resolve({
        ...base,
        verdict: "deny",
        entry: "upstream",
        reason: `binary ${req.binary || "(unknown)"} is not allowed for upstream.test`,
      });
    }
    return Promise.resolve({
      ...base,
      verdict: "allow",
      entry: "upstream",
      rule: "endpoints[0]",
      reason: "curl may reach upstream.test",
    });
  };
}

const resolve = (host: string) =>
  host === "upstream.test" ? Promise.resolve(["127.0.0.1"]) : Promise.reject(new Error("NXDOMAIN"));

async function withUpstream(fn: (port: number) => Promise<void>) {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    (req) => new Response(`upstream saw ${new URL(req.url).pathname}\n`),
  );
  try {
    await fn(server.addr.port);
  } finally {
    ac.abort();
    await server.finished;
  }
}

test("allowed and denied by binary through bridge and proxy", async () => {
  await withUpstream(async (port) => {
    const workdir = await agentWorkdir();
    const asked: DecisionRequest[] = [];
    try {
      const script = `curl -sS http://upstream.test:${port}/from-curl; echo "curl=$?";
        /usr/bin/python3 -c '
import urllib.request as u, urllib.error as e
try:
    u.urlopen("http://upstream.test:${port}/from-python")
except e.HTTPError as x:
    print("python", x.code, x.read().decode())'`;
      const r = await runThroughProxy(workdir, script, { decide: curlOnly(asked), resolve });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^upstream saw \/from-curl\ncurl=0$/m);
      const py = r.stdout.split("\n").find((l) => l.startsWith("python "));
      assert.ok(py, r.stdout);
      assert.match(py, /^python 403 /);
      const body = JSON.parse(py.slice("python 403 ".length));
      assert.equal(body.binary, Deno.realPathSync("/usr/bin/python3"));
      assert.match(body.reason, /is not allowed for upstream\.test/);
      assert.deepEqual(asked.map((a) => a.binary), [CURL, Deno.realPathSync("/usr/bin/python3")]);
      // Both were started by the agent's shell: the proxy got it as their one ancestor.
      for (const q of asked) assert.deepEqual(q.ancestors, [Deno.realPathSync("/bin/sh")]);
      // The runtime directory (socket, CA bundle) is gone once the sandbox ends.
      assert.throws(() => Deno.statSync(r.plan.bridge!.runtimeDir), Deno.errors.NotFound);
    } finally {
      await Deno.remove(workdir, { recursive: true });
    }
  });
});

test("CONNECT through the bridge is decided with the caller's binary", async () => {
  await withUpstream(async (port) => {
    const workdir = await agentWorkdir();
    const asked: DecisionRequest[] = [];
    try {
      // -p: tunnel plain HTTP through CONNECT. The second host is denied with 403 at CONNECT.
      const script = `curl -sS -p http://upstream.test:${port}/tunnel; echo "rc=$?";
        curl -sS -p -o /dev/null -w '%{http_connect}\\n' http://other.test:${port}/ ; true`;
      const r = await runThroughProxy(workdir, script, { decide: curlOnly(asked), resolve });
      assert.match(r.stdout, /^upstream saw \/tunnel\nrc=0\n403$/m, r.stdout + r.stderr);
      assert.deepEqual(asked.map((a) => [a.host, a.binary]), [
        ["upstream.test", CURL],
        ["other.test", CURL],
      ]);
    } finally {
      await Deno.remove(workdir, { recursive: true });
    }
  });
});

test(
  "rootless: the agent reaches the proxy's loopback port and no other; binaries still decide",
  async () => {
    await withUpstream(async (port) => {
      const workdir = await agentWorkdir();
      const asked: DecisionRequest[] = [];
      try {
        const script = `echo "proxy=$HTTP_PROXY"; curl -sS http://upstream.test:${port}/rootless;
          /usr/bin/python3 -c 'import urllib.request as u
try: u.urlopen("http://upstream.test:${port}/py")
except Exception as e: print("python", e)';
          curl -sS --noproxy '*' -o /dev/null http://127.0.0.1:${port}/direct; echo "direct=$?"`;
        const r = await runThroughProxy(workdir, script, { decide: curlOnly(asked), resolve }, {
          rootless: true,
        });
        assert.equal(r.plan.namespaces, false);
        assert.equal(r.plan.bridge, null);
        assert.equal(r.plan.connectPorts.length, 1);
        assert.match(
          r.stdout,
          new RegExp(`^proxy=http://127\\.0\\.0\\.1:${r.plan.connectPorts[0]}$`, "m"),
        );
        // No bridge and no caller line: the proxy identified each caller from the host's
        // sockets and processes itself.
        assert.match(r.stdout, /^upstream saw \/rootless$/m, r.stdout + r.stderr);
        assert.match(r.stdout, /^python HTTP Error 403/m);
        assert.deepEqual(asked.map((a) => [a.host, a.binary]), [
          ["upstream.test", CURL],
          ["upstream.test", Deno.realPathSync("/usr/bin/python3")],
        ]);
        for (const q of asked) assert.deepEqual(q.ancestors, [Deno.realPathSync("/bin/sh")]);
        // Landlock: connect(2) to the upstream's port directly is refused (curl exit 7).
        assert.match(r.stdout, /^direct=7$/m, r.stdout + r.stderr);
      } finally {
        await Deno.remove(workdir, { recursive: true });
      }
    });
  },
  landlockAbi < 4 ? "Landlock ABI < 4 has no TCP rules" : null,
);

test("an agent cannot claim another binary by sending its own caller line", async () => {
  await withUpstream(async (port) => {
    const workdir = await agentWorkdir();
    const asked: DecisionRequest[] = [];
    try {
      const py = `import socket
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(b'CLAWCAGE-CALLER {"pid":2,"exe":"${CURL}","sha256":""}\\r\\n'
          b"GET http://upstream.test:${port}/forged HTTP/1.1\\r\\nHost: upstream.test\\r\\n\\r\\n")
print(s.recv(4096).split(b"\\r\\n")[0].decode())`;
      await Deno.writeTextFile(`${workdir}/forge.py`, py);
      const r = await runThroughProxy(workdir, "/usr/bin/python3 forge.py", {
        decide: curlOnly(asked),
        resolve,
      });
      assert.equal(r.code, 0, r.stderr);
      // The bridge's own line comes first; the forged one is then a malformed request line.
      assert.match(r.stdout, /^HTTP\/1\.1 400 /, r.stdout);
      assert.ok(asked.every((a) => a.binary !== CURL), JSON.stringify(asked));
    } finally {
      await Deno.remove(workdir, { recursive: true });
    }
  });
});

test(
  "inspected HTTPS: curl, python3 and node trust the sandbox CA through the environment",
  async () => {
    const pki = await upstreamPki(["upstream.test"]);
    const upstream = await httpsUpstream(pki.cert, pki.key);
    const workdir = await agentWorkdir();
    const asked: DecisionRequest[] = [];
    // Connection level: inspect upstream.test. Request level: only paths under /ok/.
    const decide = (req: DecisionRequest): Promise<Decision> => {
      asked.push(req);
      const base = { inspect: true, tlsSkip: false, allowedIps: ["127.0.0.1/32"], entry: "up" };
      if (req.host !== "upstream.test") {
        return Promise.resolve({ ...base, verdict: "deny", reason: "no entry" });
      }
      if (req.path !== undefined && !req.path.startsWith("/ok/")) {
        return Promise.resolve({
          ...base,
          verdict: "deny",
          rule: "rules",
          reason: "path not allowed",
        });
      }
      return Promise.resolve({ ...base, verdict: "allow", reason: "allowed" });
    };
    const url = `https://upstream.test:${upstream.port}`;
    const node = `const http = require("http"), tls = require("tls");
const req = http.request({ host: "127.0.0.1", port: 3128, method: "CONNECT", path: "upstream.test:${upstream.port}" });
req.on("connect", (res, socket) => {
  const t = tls.connect({ socket, servername: "upstream.test" }, () => {
    t.write("GET /ok/node HTTP/1.1\\r\\nHost: upstream.test:${upstream.port}\\r\\nConnection: close\\r\\n\\r\\n");
  });
  let out = ""; t.on("data", (d) => out += d); t.on("end", () => console.log("node", out.split("\\r\\n")[0]));
  t.on("error", (e) => { console.log("node error", e.message); });
});
req.end();`;
    await Deno.writeTextFile(`${workdir}/client.js`, node);
    const script = `curl -sS ${url}/ok/curl; echo;
    curl -sS -o /dev/null -w "curl denied %{http_code}\\n" ${url}/private;
    /usr/bin/python3 -c 'import urllib.request as u; print("python", u.urlopen("${url}/ok/python").status)';
    /usr/bin/node client.js`;
    try {
      const r = await runThroughProxy(workdir, script, {
        decide,
        resolve,
        upstreamCa: [pki.caPem],
      });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.equal(JSON.parse(lines[0]).url, "/ok/curl", r.stdout);
      assert.equal(lines[1], "curl denied 403");
      assert.equal(lines[2], "python 200");
      assert.equal(lines[3], "node HTTP/1.1 200 OK");
      // Every request was asked about with its path: the proxy saw inside the TLS.
      assert.deepEqual(
        asked.filter((a) => a.path !== undefined).map((a) => a.path),
        ["/ok/curl", "/private", "/ok/python", "/ok/node"],
      );
    } finally {
      await upstream.close();
      await Deno.remove(workdir, { recursive: true });
    }
  },
  systemProgramSkip(["node"]),
);
