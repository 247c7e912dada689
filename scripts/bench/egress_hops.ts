// Egress download throughput, hop by hop: where a large body through the egress path spends its
// time and CPU. Every party runs in its own process on loopback, and one curl downloads the same
// body every way in one run:
//   - direct: curl -> upstream (HTTP, and HTTPS for the inspected path's baseline);
//   - bridge alone: curl -> the bridge (core/sandbox/bridge.ts, outside a sandbox here) -> unix
//     socket -> the upstream (which skips the caller line);
//   - proxy alone: plain HTTP, CONNECT tunnel (no inspection), inspected HTTPS;
//   - the whole path: curl -> bridge -> unix socket -> proxy -> upstream (plain HTTP);
//   - socat relaying TCP to the upstream (the peer: a relay in C, no HTTP at all).
// For each: best-of-N MiB/s, its ratio to direct, and the CPU seconds each relay process used
// per GiB moved (user + system, from /proc/PID/stat), which is what a relay costs on a busy box.
//
//   deno task bench egress-hops [--mb M] [--runs N] [--chunked] [--only REGEX] [--profile DIR]
//
// --only runs the paths whose name matches (and their baselines); --profile writes V8 CPU
// profiles (.cpuprofile) of the proxy and bridge processes into DIR.
//
// --chunked makes the upstream answer with Transfer-Encoding: chunked (1 MiB chunks), so the
// proxy validates and passes on the chunk framing.

import { join } from "node:path";
import { parseArgs } from "node:util";
import { serveBridge } from "../../core/sandbox/bridge.ts";
import { upstreamPki } from "../../tests/egress/helpers.ts";
import { machineLine, which } from "./common.ts";
import { benchProxy, cpuSeconds, readMatch } from "./egress_common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mb: { type: "string", default: "100" },
    runs: { type: "string", default: "3" },
    chunked: { type: "boolean", default: false },
    only: { type: "string" },
    profile: { type: "string" },
    role: { type: "string" },
    dir: { type: "string" },
    to: { type: "string" },
    "https-port": { type: "string" },
  },
});

const BLOCK = new Uint8Array(1 << 20).fill(120);
const enc = new TextEncoder();

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

/** Answers GET /bytes?n=N (Content-Length, or chunked with ?chunked=1) on one connection. */
async function serveBytes(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(16 * 1024);
  let pending = "";
  try {
    for (;;) {
      while (!pending.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += new TextDecoder().decode(buf.subarray(0, n));
        // The bridge's caller line comes first on the unix socket: skip it.
        if (pending.startsWith("CLAWCAGE-CALLER ") && pending.includes("\n")) {
          pending = pending.slice(pending.indexOf("\n") + 1);
        }
      }
      const end = pending.indexOf("\r\n\r\n");
      const line = pending.slice(0, pending.indexOf("\r\n"));
      pending = pending.slice(end + 4);
      const url = new URL(line.split(" ")[1] ?? "/", "http://x");
      let left = Number(url.searchParams.get("n") ?? "0");
      const chunked = url.searchParams.get("chunked") === "1";
      await writeAll(
        conn,
        enc.encode(
          `HTTP/1.1 200 OK\r\n${
            chunked ? "Transfer-Encoding: chunked" : `Content-Length: ${left}`
          }\r\n\r\n`,
        ),
      );
      while (left > 0) {
        const n = Math.min(left, BLOCK.length);
        left -= n;
        if (chunked) await writeAll(conn, enc.encode(`${n.toString(16)}\r\n`));
        await writeAll(conn, n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n));
        if (chunked) await writeAll(conn, enc.encode("\r\n"));
      }
      if (chunked) await writeAll(conn, enc.encode("0\r\n\r\n"));
    }
  } catch {
    /* client gone */
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

async function acceptAll(listener: Deno.Listener): Promise<void> {
  for await (const conn of listener) {
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    serveBytes(conn);
  }
}

async function upstreamRole(dir: string): Promise<never> {
  const pki = JSON.parse(Deno.readTextFileSync(join(dir, "pki.json")));
  const h = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const s = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: pki.cert, key: pki.key });
  const u = Deno.listen({ transport: "unix", path: join(dir, "up.sock") });
  acceptAll(h);
  acceptAll(s);
  acceptAll(u);
  console.log(`PORTS ${h.addr.port} ${s.addr.port}`);
  return await new Promise<never>(() => {});
}

async function proxyRole(dir: string, httpsPort: number): Promise<never> {
  const proxy = await benchProxy(dir, httpsPort, { writeCa: true });
  await proxy.listenUnix(join(dir, "proxy.sock"));
  console.log(`PORT ${await proxy.listenTcp()}`);
  return await new Promise<never>(() => {});
}

async function bridgeRole(to: string): Promise<never> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`PORT ${l.addr.port}`);
  await serveBridge([l], {
    proxyPath: to,
    identify: () => Promise.resolve({ pid: 1, exe: "/usr/bin/curl", sha256: "" }),
  });
  return await new Promise<never>(() => {});
}

if (values.role) {
  // Exit cleanly on SIGTERM so that a --cpu-prof profile is written.
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
}
if (values.role === "upstream") await upstreamRole(values.dir!);
if (values.role === "proxy") await proxyRole(values.dir!, Number(values["https-port"]));
if (values.role === "bridge") await bridgeRole(values.to!);

// ---- the measuring process ----

async function curl(args: string[], bytes: number): Promise<{ mibs: number; secs: number }> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [size, secs] = new TextDecoder().decode(out.stdout).split(" ").map(Number);
  if (!out.success || size !== bytes) {
    throw new Error(`curl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)} (${size})`);
  }
  return { mibs: bytes / (1 << 20) / secs, secs };
}

const MB = Number(values.mb);
const BYTES = MB * (1 << 20);
const RUNS = Number(values.runs);
const dir = Deno.makeTempDirSync({ prefix: "clawcage-bench-hops-" });
const self = new URL(import.meta.url).pathname;
const children: Deno.ChildProcess[] = [];
const spawn = (cmd: string, args: string[]) => {
  const c = new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).spawn();
  children.push(c);
  return c;
};
const run = (args: string[]) =>
  spawn(Deno.execPath(), [
    "run",
    "--allow-all",
    "--no-prompt",
    ...(values.profile && args[1] !== "upstream"
      ? [
        "--cpu-prof",
        `--cpu-prof-dir=${values.profile}`,
        `--cpu-prof-name=${args[1]}-${children.length}.cpuprofile`,
      ]
      : []),
    self,
    "--dir",
    dir,
    ...args,
  ]);

try {
  console.log(machineLine());
  const pki = await upstreamPki(["bench.test", "127.0.0.1"]);
  Deno.writeTextFileSync(join(dir, "pki.json"), JSON.stringify(pki));
  Deno.writeTextFileSync(join(dir, "upstream-ca.pem"), pki.caPem);
  const up = run(["--role", "upstream"]);
  const [, hp, sp] = await readMatch(up.stdout, /PORTS (\d+) (\d+)/);
  const proxy = run(["--role", "proxy", "--https-port", sp]);
  const proxyPort = (await readMatch(proxy.stdout, /PORT (\d+)/))[1];
  const bridgeUp = run(["--role", "bridge", "--to", join(dir, "up.sock")]);
  const bridgeUpPort = (await readMatch(bridgeUp.stdout, /PORT (\d+)/))[1];
  const bridgeProxy = run(["--role", "bridge", "--to", join(dir, "proxy.sock")]);
  const bridgeProxyPort = (await readMatch(bridgeProxy.stdout, /PORT (\d+)/))[1];
  let socat: Deno.ChildProcess | null = null;
  let socatPort = "";
  if (which("socat")) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    socatPort = String(probe.addr.port);
    probe.close();
    socat = spawn("socat", [
      `TCP-LISTEN:${socatPort},bind=127.0.0.1,fork,reuseaddr,nodelay`,
      `TCP:127.0.0.1:${hp},nodelay`,
    ]);
    await new Promise((r) => setTimeout(r, 300));
  } else console.log("socat: not installed (apt-get install socat); skipped");

  const q = `/bytes?n=${BYTES}${values.chunked ? "&chunked=1" : ""}`;
  const http = `http://bench.test:${hp}${q}`;
  const https = `https://bench.test:${sp}${q}`;
  const upCa = ["--cacert", join(dir, "upstream-ca.pem")];
  const resolve = ["--resolve", `bench.test:${sp}:127.0.0.1`];
  interface Path {
    name: string;
    args: string[];
    base: string;
    relays: { name: string; pid: number }[];
  }
  const B = { name: "bridge", pid: bridgeUp.pid }, BP = { name: "bridge", pid: bridgeProxy.pid };
  const P = { name: "proxy", pid: proxy.pid };
  const paths: Path[] = [
    { name: "direct", args: [`http://127.0.0.1:${hp}${q}`], base: "direct", relays: [] },
    {
      name: "bridge alone (TCP -> unix)",
      args: [`http://127.0.0.1:${bridgeUpPort}${q}`],
      base: "direct",
      relays: [B],
    },
    {
      name: "proxy plain HTTP",
      args: ["-x", `http://127.0.0.1:${proxyPort}`, http],
      base: "direct",
      relays: [P],
    },
    {
      name: "proxy CONNECT tunnel",
      args: ["-p", "-x", `http://127.0.0.1:${proxyPort}`, http],
      base: "direct",
      relays: [P],
    },
    {
      name: "bridge + proxy plain HTTP",
      args: ["-x", `http://127.0.0.1:${bridgeProxyPort}`, http],
      base: "direct",
      relays: [BP, P],
    },
    {
      name: "bridge + proxy CONNECT",
      args: ["-p", "-x", `http://127.0.0.1:${bridgeProxyPort}`, http],
      base: "direct",
      relays: [BP, P],
    },
    ...(socat
      ? [{
        name: "socat TCP relay (peer)",
        args: [`http://127.0.0.1:${socatPort}${q}`],
        base: "direct",
        relays: [{ name: "socat", pid: 0 }],
      }]
      : []),
    { name: "direct HTTPS", args: [...upCa, ...resolve, https], base: "direct HTTPS", relays: [] },
    {
      name: "proxy inspected HTTPS",
      args: [
        "--cacert",
        join(dir, "clawcage-ca.pem"),
        "-x",
        `http://127.0.0.1:${proxyPort}`,
        https,
      ],
      base: "direct HTTPS",
      relays: [P],
    },
  ];

  /** socat forks a process per connection: count the whole process group's children. */
  const socatCpu = () => {
    if (!socat) return 0;
    // The forked children are gone by the time we read; their time lands in the parent's
    // cutime/cstime once reaped.
    const stat = Deno.readTextFileSync(`/proc/${socat.pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  };
  const cpuOf = (r: { name: string; pid: number }) =>
    r.name === "socat" ? socatCpu() : cpuSeconds(r.pid);

  console.log(
    `${MB} MiB download with curl${
      values.chunked ? " (chunked)" : ""
    }, best of ${RUNS}; relay CPU seconds per GiB moved (median run):`,
  );
  const best = new Map<string, number>();
  const only = values.only ? new RegExp(values.only) : null;
  for (const p of paths.filter((x) => !only || only.test(x.name) || x.name === x.base)) {
    const speeds: number[] = [];
    const cpu: number[][] = p.relays.map(() => []);
    for (let i = 0; i < RUNS; i++) {
      const before = p.relays.map(cpuOf);
      // socat's child is reaped after the connection closes: give it a moment.
      const r = await curl(p.args, BYTES);
      if (p.relays.some((x) => x.name === "socat")) await new Promise((r) => setTimeout(r, 100));
      const after = p.relays.map(cpuOf);
      speeds.push(r.mibs);
      p.relays.forEach((_, j) => cpu[j].push((after[j] - before[j]) / (BYTES / (1 << 30))));
    }
    const mibs = Math.max(...speeds);
    best.set(p.name, mibs);
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
    const cpus = p.relays.map((r, j) => `${r.name} ${med(cpu[j]).toFixed(2)}`).join(", ");
    console.log(
      `  ${p.name.padEnd(28)} ${mibs.toFixed(0).padStart(6)} MiB/s  ${
        (mibs / best.get(p.base)!).toFixed(2)
      }x${cpus ? `  cpu s/GiB: ${cpus}` : ""}`,
    );
  }
} finally {
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch { /* gone */ }
    await c.status;
  }
  Deno.removeSync(dir, { recursive: true });
}
