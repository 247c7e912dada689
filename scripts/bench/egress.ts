// Egress proxy cost, in one run, every party in its own process on loopback:
//   - 1 KB GET on a warm keep-alive connection: p50/p99 latency direct, through our proxy
//     (plain HTTP absolute-form, CONNECT tunnel, inspected HTTPS), through sandbox-runtime's
//     proxy (srt, plain and CONNECT) and through a socat TCP relay (an L4 floor: socat has no
//     CONNECT server, so it relays a fixed port without any HTTP parsing);
//   - a 100 MB download (best of three): throughput of each path as a ratio of direct, and the
//     CPU seconds the relay process (ours, srt's node, socat) spent per GiB moved (median of the
//     three), which moves less than MiB/s when other work shares the cores;
//   - 500 concurrent connections (4 requests each) through our proxy and srt: errors, rate;
//   - the same proxy recording every connection and request in a real audit log (hash chain,
//     batched fsync): the audit trail's cost to a busy proxy, as a ratio.
//
//   deno task bench egress [--iterations N] [--mb M] [--concurrency C]
//
// srt is installed with npm into .bench/srt on first use (skipped with the reason if that
// fails); socat is used if installed (apt-get install socat).

import "reflect-metadata";
import { Buffer } from "node:buffer";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as tls from "node:tls";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AuditLog } from "../../core/audit/writer.ts";
import { upstreamPki } from "../../tests/egress/helpers.ts";
import { machineLine, percentile, which } from "./common.ts";
import { benchProxy, cpuSeconds, readMatch } from "./egress_common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    iterations: { type: "string", default: "1000" },
    mb: { type: "string", default: "100" },
    concurrency: { type: "string", default: "500" },
    role: { type: "string" },
    dir: { type: "string" },
    "https-port": { type: "string" },
    audit: { type: "string" },
  },
});

const BLOCK = new Uint8Array(1 << 20).fill(120);
const KB = new Uint8Array(1024).fill(97);

/** Role: upstream. node:http and node:https servers answering /1k and /bytes?n=N. */
async function upstreamRole(dir: string): Promise<void> {
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/bytes") {
      let left = Number(url.searchParams.get("n"));
      res.writeHead(200, { "content-length": String(left) });
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, BLOCK.length);
          left -= n;
          if (!res.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
            return void res.once("drain", pump);
          }
        }
        res.end();
      };
      return pump();
    }
    res.writeHead(200, { "content-length": "1024" });
    res.end(KB);
  };
  const pki = JSON.parse(Deno.readTextFileSync(join(dir, "pki.json")));
  const h = http.createServer({ noDelay: true }, handler);
  const s = https.createServer({ cert: pki.cert, key: pki.key, noDelay: true }, handler);
  await new Promise<void>((r) => h.listen(0, "127.0.0.1", () => r()));
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (x: net.Server) => (x.address() as net.AddressInfo).port;
  console.log(`PORTS ${port(h)} ${port(s)}`);
  await new Promise(() => {});
}

/** Role: our proxy (benchProxy). */
async function proxyRole(dir: string, httpsPort: number): Promise<void> {
  // With --audit DIR: every connection and request goes to a real audit log (default fsync).
  const log = values.audit
    ? await AuditLog.open(join(values.audit, "log"), { keyDir: join(values.audit, "key") })
    : null;
  // The inspected-HTTPS path uses the first proxy's CA.
  const proxy = await benchProxy(dir, httpsPort, {
    writeCa: !values.audit,
    ...(log ? { audit: log } : {}),
  });
  console.log(`PORT ${await proxy.listenTcp()}`);
  await new Promise(() => {});
}

if (values.role === "upstream") {
  await upstreamRole(values.dir!);
  Deno.exit(0);
}
if (values.role === "proxy") await proxyRole(values.dir!, Number(values["https-port"]));

// ---- the measuring process ----

/** A minimal keep-alive HTTP/1.1 client on one socket (responses carry Content-Length). */
class Client {
  #buf: Buffer = Buffer.alloc(0);
  #wake: (() => void) | null = null;
  #closed = false;
  constructor(readonly sock: net.Socket | tls.TLSSocket) {
    sock.on("data", (d: Buffer) => {
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
      this.#wake?.();
    });
    sock.on("close", () => {
      this.#closed = true;
      this.#wake?.();
    });
    sock.on("error", () => {});
  }
  async #wait(): Promise<void> {
    if (this.#closed) throw new Error("connection closed");
    await new Promise<void>((r) => this.#wake = r);
    this.#wake = null;
  }
  /** Sends a request head; returns the response status and body length. */
  async get(target: string, host: string): Promise<{ status: number; bytes: number }> {
    this.sock.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    let end;
    while ((end = this.#buf.indexOf("\r\n\r\n")) < 0) await this.#wait();
    const head = this.#buf.subarray(0, end).toString("latin1");
    const status = Number(head.slice(9, 12));
    const length = Number(head.match(/content-length: *(\d+)/i)?.[1] ?? "0");
    let got = this.#buf.length - end - 4;
    // Drop body bytes as they arrive instead of buffering 100 MB.
    this.#buf = Buffer.alloc(0);
    while (got < length) {
      await this.#wait();
      got += this.#buf.length;
      this.#buf = Buffer.alloc(0);
    }
    if (got > length) throw new Error("client: more bytes than Content-Length");
    return { status, bytes: length };
  }
  /** CONNECT through a proxy; resolves when the 200 arrived. */
  async connect(authority: string): Promise<void> {
    this.sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    let end;
    while ((end = this.#buf.indexOf("\r\n\r\n")) < 0) await this.#wait();
    const head = this.#buf.subarray(0, end).toString("latin1");
    if (!/^HTTP\/1.1 200/.test(head)) throw new Error(`CONNECT refused: ${head}`);
    this.#buf = this.#buf.subarray(end + 4);
  }
  close(): void {
    this.sock.destroy();
  }
}

function tcp(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.setNoDelay(true);
      resolve(new Client(s));
    });
    s.once("error", reject);
  });
}

/** TLS over an existing client's socket (after CONNECT) or a fresh one. */
function tlsOver(c: Client | null, port: number, ca: string, servername: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const opts = { ca, servername, ALPNProtocols: ["http/1.1"] };
    const t = c
      ? tls.connect({ ...opts, socket: c.sock as net.Socket })
      : tls.connect({ ...opts, host: "127.0.0.1", port });
    t.once("secureConnect", () => {
      t.setNoDelay(true);
      resolve(new Client(t));
    });
    t.once("error", reject);
  });
}

interface Path {
  name: string;
  /** Opens a warm connection, returns a client and the target form to use. */
  open(): Promise<{ client: Client; target: (path: string) => string; host: string }>;
  /** curl arguments fetching `path` the same way. */
  curl(path: string): string[];
  base: "http" | "https";
  /** The relay's process (none for direct); socat's forked children count through cutime. */
  relay?: { pid: number; children?: boolean };
}

async function latency(p: Path, n: number): Promise<{ p50: number; p99: number }> {
  const { client, target, host } = await p.open();
  const times: number[] = [];
  for (let i = 0; i < n + 50; i++) {
    const t0 = performance.now();
    const r = await client.get(target("/1k"), host);
    const dt = performance.now() - t0;
    if (r.status !== 200 || r.bytes !== 1024) throw new Error(`${p.name}: ${r.status} ${r.bytes}`);
    if (i >= 50) times.push(dt);
  }
  client.close();
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/**
 * Best of three downloads of `bytes` with curl (a real client), MiB/s, and the median CPU
 * seconds per GiB of the relay process (NaN without one).
 */
async function throughput(
  args: string[],
  bytes: number,
  relay?: { pid: number; children?: boolean },
): Promise<{ mibs: number; cpu: number }> {
  let best = 0;
  const cpu: number[] = [];
  for (let i = 0; i < 3; i++) {
    const before = relay ? cpuSeconds(relay.pid, relay.children) : 0;
    const out = await new Deno.Command("curl", {
      args: ["-sS", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const [size, speed] = new TextDecoder().decode(out.stdout).split(" ").map(Number);
    if (!out.success || size !== bytes) {
      throw new Error(
        `curl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)} (${size} bytes)`,
      );
    }
    best = Math.max(best, speed / (1 << 20));
    if (relay) {
      // socat's child is reaped (its time lands in cutime) just after the connection closes.
      if (relay.children) await new Promise((r) => setTimeout(r, 100));
      cpu.push((cpuSeconds(relay.pid, relay.children) - before) / (bytes / (1 << 30)));
    }
  }
  return { mibs: best, cpu: cpu.length ? cpu.sort((a, b) => a - b)[1] : NaN };
}

async function concurrent(p: Path, conns: number): Promise<{ errors: number; rps: number }> {
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conns }, async () => {
    try {
      const { client, target, host } = await p.open();
      for (let i = 0; i < 4; i++) {
        const r = await client.get(target("/1k"), host);
        if (r.status !== 200) errors++;
      }
      client.close();
    } catch {
      errors++;
    }
  }));
  return { errors, rps: (conns * 4) / ((performance.now() - t0) / 1000) };
}

/** Installs sandbox-runtime into .bench/srt (once) and returns its proxy script, or a reason. */
async function srtScript(): Promise<string | { skip: string }> {
  const root = new URL("../../.bench/srt/", import.meta.url).pathname;
  const pkg = join(root, "node_modules/@anthropic-ai/sandbox-runtime/dist/sandbox/http-proxy.js");
  if (!which("node")) return { skip: "node not installed" };
  try {
    Deno.statSync(pkg);
  } catch {
    Deno.mkdirSync(root, { recursive: true });
    Deno.writeTextFileSync(join(root, "package.json"), '{"private":true,"type":"module"}');
    console.log("installing @anthropic-ai/sandbox-runtime@0.0.83 into .bench/srt ...");
    const out = await new Deno.Command("npm", {
      args: ["install", "--no-audit", "--no-fund", "@anthropic-ai/sandbox-runtime@0.0.83"],
      cwd: root,
      stdout: "null",
      stderr: "piped",
    }).output().catch((e) => ({ success: false, stderr: new TextEncoder().encode(String(e)) }));
    if (!out.success) {
      return { skip: `npm install failed: ${new TextDecoder().decode(out.stderr).slice(0, 200)}` };
    }
  }
  const script = join(root, "srt_proxy.mjs");
  Deno.writeTextFileSync(
    script,
    `import { createHttpProxyServer } from "@anthropic-ai/sandbox-runtime/dist/sandbox/http-proxy.js";
const server = createHttpProxyServer({ filter: async () => true });
server.listen(0, "127.0.0.1", () => console.log("PORT " + server.address().port));
`,
  );
  return script;
}

const ITER = Number(values.iterations);
const BYTES = Number(values.mb) * (1 << 20);
const CONNS = Number(values.concurrency);
const self = new URL(import.meta.url).pathname;
const dir = Deno.makeTempDirSync({ prefix: "clawcage-bench-egress-" });
const children: Deno.ChildProcess[] = [];
const spawn = (cmd: string, args: string[], cwd?: string) => {
  const c = new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit", cwd }).spawn();
  children.push(c);
  return c;
};

try {
  console.log(machineLine());
  const pki = await upstreamPki(["bench.test", "127.0.0.1"]);
  Deno.writeTextFileSync(join(dir, "pki.json"), JSON.stringify(pki));
  Deno.writeTextFileSync(join(dir, "upstream-ca.pem"), pki.caPem);
  const run = ["run", "--allow-all", "--no-prompt", self];
  const up = spawn(Deno.execPath(), [...run, "--role", "upstream", "--dir", dir]);
  const [, hp, sp] = await readMatch(up.stdout, /PORTS (\d+) (\d+)/);
  const httpPort = Number(hp), httpsPort = Number(sp);
  const ours = spawn(Deno.execPath(), [
    ...run,
    "--role",
    "proxy",
    "--dir",
    dir,
    "--https-port",
    String(httpsPort),
  ]);
  const proxyPort = Number((await readMatch(ours.stdout, /PORT (\d+)/))[1]);
  const audited = spawn(Deno.execPath(), [
    ...run,
    "--role",
    "proxy",
    "--dir",
    dir,
    "--https-port",
    String(httpsPort),
    "--audit",
    join(dir, "audit"),
  ]);
  const auditedPort = Number((await readMatch(audited.stdout, /PORT (\d+)/))[1]);
  const ourCa = Deno.readTextFileSync(join(dir, "clawcage-ca.pem"));
  // Which process relays for each port (for the CPU per GiB figures).
  const relayOf = new Map<number, { pid: number; children?: boolean }>([
    [proxyPort, { pid: ours.pid }],
    [auditedPort, { pid: audited.pid }],
  ]);

  const direct = (port: number, name = "direct"): Path => ({
    name,
    base: "http",
    open: async () => ({ client: await tcp(port), target: (p) => p, host: "bench.test" }),
    curl: (p) => [`http://127.0.0.1:${port}${p}`],
    relay: relayOf.get(port),
  });
  const viaProxy = (port: number, name: string): Path => ({
    name,
    base: "http",
    open: async () => ({
      client: await tcp(port),
      target: (p) => `http://bench.test:${httpPort}${p}`,
      host: "bench.test",
    }),
    curl: (p) => ["-x", `http://127.0.0.1:${port}`, `http://bench.test:${httpPort}${p}`],
    relay: relayOf.get(port),
  });
  const viaConnect = (port: number, name: string): Path => ({
    name,
    base: "http",
    open: async () => {
      const c = await tcp(port);
      await c.connect(`${port === proxyPort ? "bench.test" : "127.0.0.1"}:${httpPort}`);
      return { client: c, target: (p) => p, host: "bench.test" };
    },
    curl: (p) => [
      "-p",
      "-x",
      `http://127.0.0.1:${port}`,
      `http://${port === proxyPort ? "bench.test" : "127.0.0.1"}:${httpPort}${p}`,
    ],
    relay: relayOf.get(port),
  });
  const paths: Path[] = [
    direct(httpPort),
    viaProxy(proxyPort, "clawcage plain HTTP"),
    viaConnect(proxyPort, "clawcage CONNECT tunnel"),
    viaProxy(auditedPort, "clawcage plain HTTP + audit"),
  ];
  let srtPort = 0;
  const srt = await srtScript();
  if (typeof srt === "string") {
    const c = spawn("node", [srt], join(srt, ".."));
    srtPort = Number((await readMatch(c.stdout, /PORT (\d+)/))[1]);
    relayOf.set(srtPort, { pid: c.pid });
    paths.push(
      {
        ...viaProxy(srtPort, "srt plain HTTP"),
        open: async () => ({
          client: await tcp(srtPort),
          target: (p) => `http://127.0.0.1:${httpPort}${p}`,
          host: `127.0.0.1:${httpPort}`,
        }),
        curl: (p) => ["-x", `http://127.0.0.1:${srtPort}`, `http://127.0.0.1:${httpPort}${p}`],
      },
      viaConnect(srtPort, "srt CONNECT tunnel"),
    );
  } else console.log(`srt: skipped (${srt.skip})`);
  if (which("socat")) {
    const c = spawn("socat", [
      "-d",
      "TCP-LISTEN:0,bind=127.0.0.1,fork,reuseaddr,nodelay",
      `TCP:127.0.0.1:${httpPort},nodelay`,
    ]);
    // socat prints nothing useful on stdout; find its port from /proc.
    void c;
    await new Promise((r) => setTimeout(r, 300));
    const port = socatPort(c.pid);
    if (port) {
      relayOf.set(port, { pid: c.pid, children: true });
      paths.push(direct(port, "socat TCP relay (L4 floor)"));
    } else console.log("socat: could not find its listening port; skipped");
  } else console.log("socat: not installed (apt-get install socat); skipped");
  const httpsPaths: Path[] = [
    {
      name: "direct HTTPS",
      base: "https",
      open: async () => ({
        client: await tlsOver(null, httpsPort, pki.caPem, "bench.test"),
        target: (p) => p,
        host: "bench.test",
      }),
      curl: (p) => [
        "--cacert",
        join(dir, "upstream-ca.pem"),
        "--resolve",
        `bench.test:${httpsPort}:127.0.0.1`,
        `https://bench.test:${httpsPort}${p}`,
      ],
    },
    {
      name: "clawcage inspected HTTPS",
      base: "https",
      relay: { pid: ours.pid },
      open: async () => {
        const c = await tcp(proxyPort);
        await c.connect(`bench.test:${httpsPort}`);
        return {
          client: await tlsOver(c, 0, ourCa, "bench.test"),
          target: (p) => p,
          host: `bench.test:${httpsPort}`,
        };
      },
      curl: (p) => [
        "--cacert",
        join(dir, "clawcage-ca.pem"),
        "-x",
        `http://127.0.0.1:${proxyPort}`,
        `https://bench.test:${httpsPort}${p}`,
      ],
    },
  ];

  console.log(`\n1 KB GET, warm keep-alive connection, ${ITER} requests each (ms):`);
  const lat = new Map<string, { p50: number; p99: number }>();
  for (const p of [...paths, ...httpsPaths]) {
    const r = await latency(p, ITER);
    lat.set(p.name, r);
    const base = lat.get(p.base === "https" ? "direct HTTPS" : "direct")!;
    const added = r.p50 - base.p50;
    console.log(
      `  ${p.name.padEnd(30)} p50 ${r.p50.toFixed(3)}  p99 ${r.p99.toFixed(3)}` +
        (p.name.startsWith("direct")
          ? ""
          : `  added p50 ${added >= 0 ? "+" : ""}${added.toFixed(3)}`),
    );
  }

  console.log(
    `\n${values.mb} MB download with curl, best of 3 (MiB/s, ratio to direct, relay CPU s/GiB):`,
  );
  const tput = new Map<string, number>();
  for (const p of [...paths, ...httpsPaths]) {
    const r = await throughput(p.curl(`/bytes?n=${BYTES}`), BYTES, p.relay);
    tput.set(p.name, r.mibs);
    const base = tput.get(p.base === "https" ? "direct HTTPS" : "direct")!;
    console.log(
      `  ${p.name.padEnd(30)} ${r.mibs.toFixed(0).padStart(6)} MiB/s  ${
        (r.mibs / base).toFixed(2)
      }x${Number.isNaN(r.cpu) ? "" : `  ${r.cpu.toFixed(2)} s/GiB`}`,
    );
  }

  console.log(`\n${CONNS} concurrent connections x 4 requests:`);
  const rps = new Map<string, number>();
  for (const p of paths.filter((x) => /plain HTTP/.test(x.name))) {
    const r = await concurrent(p, CONNS);
    console.log(`  ${p.name.padEnd(30)} errors ${r.errors}  ${r.rps.toFixed(0)} req/s`);
    rps.set(p.name, r.rps);
  }
  const plain = lat.get("clawcage plain HTTP")!,
    withAudit = lat.get("clawcage plain HTTP + audit")!;
  console.log(
    `\naudit trail's cost to the proxy: p50 ${
      ((withAudit.p50 / plain.p50 - 1) * 100).toFixed(1)
    } % per request; throughput under ${CONNS} connections ${
      ((1 - rps.get("clawcage plain HTTP + audit")! / rps.get("clawcage plain HTTP")!) * 100)
        .toFixed(1)
    } % lower (goal: under 5 %)`,
  );
} finally {
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch { /* gone */ }
    await c.status;
  }
  Deno.removeSync(dir, { recursive: true });
}

/** The TCP port a process listens on (from /proc/net/tcp and its fds). */
function socatPort(pid: number): number | null {
  const inodes = new Set<string>();
  for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      const m = Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`).match(/^socket:\[(\d+)\]$/);
      if (m) inodes.add(m[1]);
    } catch { /* closed */ }
  }
  for (const line of Deno.readTextFileSync("/proc/net/tcp").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && f[3] === "0A" && inodes.has(f[9])) return parseInt(f[1].split(":")[1], 16);
  }
  return null;
}
