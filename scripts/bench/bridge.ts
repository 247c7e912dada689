// Bridge benchmark: what the stage's bridge (127.0.0.1:3128 inside the sandbox -> caller
// identity -> the proxy's unix socket outside) adds to a connection, measured against the same
// client talking to the same server over plain loopback TCP, in one run.
//
// The server is a minimal HTTP responder (no policy, no proxy logic), so the figures are the
// bridge's alone: a new connection per 1 KB request (caller lookup + relay setup), requests on
// one kept-alive connection (the relay hop), and a download over one connection (throughput).
// The client is the same python3 script inside the sandbox (through the bridge) and on the
// host (direct, and through socat relaying TCP to the same unix socket: the plain-relay peer).
//
//   deno task bench bridge [--requests N] [--mb M]   (root: the bridge needs namespaces)

import { parseArgs } from "node:util";
import { parsePolicy } from "../../core/policy/load.ts";
import { buildPlan, withEgress } from "../../core/sandbox/plan.ts";
import { createRuntimeDir } from "../../core/sandbox/runtime_dir.ts";
import { hostView, runSandbox } from "../../core/sandbox/supervisor.ts";
import { systemProgram } from "../../core/self.ts";
import { machineLine } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { requests: { type: "string", default: "400" }, mb: { type: "string", default: "100" } },
});
const requests = Number(values.requests);
const mb = Number(values.mb);

if (Deno.uid() !== 0) {
  console.error("bench bridge: needs root (the bridge runs in the sandbox's network namespace)");
  Deno.exit(2);
}
const python = systemProgram("python3");
if (!python) {
  console.error("bench bridge: python3 not found (apt-get install python3)");
  Deno.exit(2);
}

const SMALL = new Uint8Array(1024).fill(0x61);
const CHUNK = new Uint8Array(1 << 20).fill(0x62);
const enc = new TextEncoder();

/** Serves HTTP/1.1 keep-alive: GET /big answers `mb` MB, anything else 1 KB. */
async function serve(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(16 * 1024);
  let pending = "";
  try {
    for (;;) {
      while (!pending.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += new TextDecoder().decode(buf.subarray(0, n));
      }
      // A caller line from the bridge comes first on the unix socket: skip it.
      if (pending.startsWith("CLAWCAGE-CALLER ")) {
        pending = pending.slice(pending.indexOf("\n") + 1);
      }
      const end = pending.indexOf("\r\n\r\n");
      const requestLine = pending.slice(0, pending.indexOf("\r\n"));
      pending = pending.slice(end + 4);
      const big = / \S*\/big /.test(requestLine);
      const length = big ? mb * CHUNK.length : SMALL.length;
      await write(conn, enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${length}\r\n\r\n`));
      if (big) { for (let i = 0; i < mb; i++) await write(conn, CHUNK); }
      else await write(conn, SMALL);
    }
  } catch {
    /* client gone */
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

async function write(conn: Deno.Conn, data: Uint8Array) {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

async function acceptAll(listener: Deno.Listener) {
  try {
    for await (const conn of listener) {
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      serve(conn);
    }
  } catch { /* closed */ }
}

const CLIENT = String.raw`
import json, socket, sys, time
host, port, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
REQ = b"GET http://bench.test/small HTTP/1.1\r\nHost: bench.test\r\n\r\n"
def response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    got = len(body)
    while got < length:
        chunk = s.recv(1 << 20)
        if not chunk: raise SystemExit("short body")
        got += len(chunk)
for _ in range(20):  # warm up
    s = socket.create_connection((host, port)); s.sendall(REQ); response(s); s.close()
fresh = []
for _ in range(n):
    t = time.perf_counter()
    s = socket.create_connection((host, port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(REQ); response(s); s.close()
    fresh.append(time.perf_counter() - t)
s = socket.create_connection((host, port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
kept = []
for _ in range(n):
    t = time.perf_counter(); s.sendall(REQ); response(s); kept.append(time.perf_counter() - t)
t = time.perf_counter()
s.sendall(b"GET http://bench.test/big HTTP/1.1\r\nHost: bench.test\r\n\r\n"); response(s)
download = time.perf_counter() - t
s.close()
fresh.sort(); kept.sort()
pct = lambda xs, p: xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000
print(json.dumps({"fresh_p50": pct(fresh, 50), "fresh_p99": pct(fresh, 99),
                  "kept_p50": pct(kept, 50), "kept_p99": pct(kept, 99),
                  "mbps": mb / download}))
`;

interface Figures {
  fresh_p50: number;
  fresh_p99: number;
  kept_p50: number;
  kept_p99: number;
  mbps: number;
}

const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "clawcage-bench-bridge-" });
await Deno.chmod(work, 0o777);
await Deno.writeTextFile(`${work}/client.py`, CLIENT);

async function hostClient(port: number): Promise<Figures> {
  const out = await new Deno.Command(python!, {
    args: [`${work}/client.py`, "127.0.0.1", String(port), String(requests), String(mb)],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

// Direct: the client on the host, the server on a loopback TCP port.
const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
acceptAll(tcp);
const directFigures = await hostClient(tcp.addr.port);
tcp.close();

// Through the bridge: the client in a sandbox, the server on the proxy's unix socket.
const policy = parsePolicy(
  `version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc]
  read_write: [/dev/null]
process:
  run_as_user: nobody
`,
  "bench-policy.yaml",
);
const host = { ...hostView(), stdinIsTerminal: false };
const base = buildPlan(policy, {
  argv: [
    "/bin/sh",
    "-c",
    `exec > ${work}/bridge.json; ${python} ${work}/client.py 127.0.0.1 3128 ${requests} ${mb}`,
  ],
  workdir: work,
  env: [],
  rootless: false,
}, host);
const dir = createRuntimeDir({ root: true, agentUid: base.user.uid, agentGid: base.user.gid });
const socketPath = `${dir.socketDir}/${dir.socketName}`;
const unix = Deno.listen({ transport: "unix", path: socketPath });
Deno.chownSync(socketPath, base.user.uid, base.user.gid);
acceptAll(unix);
const plan = withEgress(base, {
  runtimeDir: dir.path,
  socketDir: dir.socketDir,
  socketName: dir.socketName,
  proxyPort: null,
  caBundle: null,
});
const code = await runSandbox(plan);

// Peer: socat relaying loopback TCP to the same unix socket (a process per connection, like
// the bridge's task per connection; no caller identity, no sandbox).
const socat = systemProgram("socat");
let socatFigures: Figures | null = null;
if (socat) {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const relay = new Deno.Command(socat, {
    args: [
      `TCP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,nodelay`,
      `UNIX-CONNECT:${socketPath}`,
    ],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  socatFigures = await hostClient(port);
  relay.kill("SIGTERM");
  await relay.status;
}
unix.close();
dir.remove();
if (code !== 0) {
  console.error(`bench bridge: the sandboxed client failed (exit ${code})`);
  Deno.exit(1);
}
const bridgeFigures: Figures = JSON.parse(await Deno.readTextFile(`${work}/bridge.json`));
await Deno.remove(work, { recursive: true });

const f = (x: number, unit: string) => `${x.toFixed(3)}${unit}`.padStart(11);
console.log(machineLine());
console.log(`client: ${python} (same script every way), ${requests} requests, ${mb} MB download`);
console.log(
  `${"".padEnd(32)}${"direct".padStart(11)}${"socat".padStart(11)}${"bridge".padStart(11)}` +
    "  bridge added vs direct / vs socat",
);
const row = (name: string, key: keyof Figures) => {
  const d = directFigures[key], b = bridgeFigures[key], s = socatFigures?.[key];
  const unit = key === "mbps" ? "" : "ms";
  if (key === "mbps") {
    console.log(
      `${name.padEnd(32)}${d.toFixed(0).padStart(11)}${(s?.toFixed(0) ?? "n/a").padStart(11)}${
        b.toFixed(0).padStart(11)
      }  bridge/direct ${(b / d * 100).toFixed(0)}%${
        s ? `, bridge/socat ${(b / s * 100).toFixed(0)}%` : ""
      }`,
    );
    return;
  }
  console.log(
    `${name.padEnd(32)}${f(d, unit)}${s === undefined ? "n/a".padStart(11) : f(s, unit)}${
      f(b, unit)
    }  ${(b - d >= 0 ? "+" : "") + (b - d).toFixed(3)}ms / ${
      s === undefined ? "n/a" : (b - s >= 0 ? "+" : "") + (b - s).toFixed(3) + "ms"
    }`,
  );
};
row("new connection + 1 KB GET p50", "fresh_p50");
row("new connection + 1 KB GET p99", "fresh_p99");
row("kept-alive 1 KB GET p50", "kept_p50");
row("kept-alive 1 KB GET p99", "kept_p99");
row("download MB/s", "mbps");
if (!socat) console.log("socat: not installed (apt-get install socat)");
