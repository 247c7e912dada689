// Audit log throughput: records/s sustained through AuditLog (hash chain + seals) with batched
// fsync, fsync per record and no fsync, against plain JSON-lines peers measured in the same run:
// node:fs appendFileSync per record (what a naive logger does) and a batched plain writer (the
// same batching without chain or seals, to isolate their cost).
//
//   deno run --allow-all scripts/bench/audit_throughput.ts [--records N] [--dir DIR]

import { appendFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { AuditEvent } from "../../core/audit/events.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import { AuditLog, type FsyncPolicy } from "../../core/audit/writer.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { records: { type: "string" }, dir: { type: "string" } },
});
const N = Number(values.records ?? 200_000);
const root = values.dir ?? Deno.makeTempDirSync({ prefix: "clawcage-audit-bench-" });

function event(i: number): AuditEvent {
  return {
    class: "http",
    activity: "request",
    sandbox: "bench",
    decision: i % 10 === 0 ? "deny" : "allow",
    rule: "github",
    dst: { host: "api.github.com", ip: "140.82.112.6", port: 443 },
    http: { method: "GET", url: `https://api.github.com/repos/o/r/contents/file${i}.ts` },
    actor: { pid: 4242, exe: "/usr/bin/node" },
  };
}

const YIELD_EVERY = 1000; // a busy producer that yields to the event loop now and then

interface Row {
  name: string;
  records: number;
  seconds: number;
  bytes: number;
}

async function benchAuditLog(name: string, fsync: FsyncPolicy, n: number): Promise<Row> {
  const dir = join(root, name.replace(/\W+/g, "-"));
  const log = await AuditLog.open(dir, { keyDir: join(root, "key"), fsync });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    log.record(event(i));
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((r) => setTimeout(r, 0));
  }
  await log.flush();
  const seconds = (performance.now() - t0) / 1000;
  await log.close();
  const v = verifyLog(dir, join(root, "key", "audit.key"));
  if (!v.ok) throw new Error(`bench log does not verify: ${v.broken?.message}`);
  return { name, records: n, seconds, bytes: dirBytes(dir) };
}

async function benchPlainBatched(n: number): Promise<Row> {
  const path = join(root, "plain-batched.jsonl");
  const f = Deno.openSync(path, { write: true, create: true, append: true });
  let pending: string[] = [];
  let lastSync = performance.now();
  const enc = new TextEncoder();
  const drain = async () => {
    const b = enc.encode(pending.join("\n") + "\n");
    pending = [];
    let off = 0;
    while (off < b.length) off += await f.write(b.subarray(off));
    if (performance.now() - lastSync >= 100) {
      await f.syncData();
      lastSync = performance.now();
    }
  };
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    pending.push(JSON.stringify({ seq: i + 1, time: new Date().toISOString(), event: event(i) }));
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await drain();
  }
  if (pending.length) await drain();
  await f.syncData();
  const seconds = (performance.now() - t0) / 1000;
  f.close();
  return {
    name: "plain JSON lines, batched writes, fsync every 100 ms",
    records: n,
    seconds,
    bytes: Deno.statSync(path).size,
  };
}

function benchAppendFileSync(n: number): Row {
  const path = join(root, "plain-append.jsonl");
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    appendFileSync(
      path,
      JSON.stringify({ seq: i + 1, time: new Date().toISOString(), event: event(i) }) + "\n",
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    name: "plain JSON lines, appendFileSync per record (no fsync)",
    records: n,
    seconds,
    bytes: Deno.statSync(path).size,
  };
}

function dirBytes(dir: string): number {
  let s = 0;
  for (const e of Deno.readDirSync(dir)) if (e.isFile) s += Deno.statSync(join(dir, e.name)).size;
  return s;
}

function fileSystemOf(path: string): string {
  try {
    const out = new Deno.Command("df", { args: ["-T", path] }).outputSync();
    const last = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!.split(/\s+/);
    return `${last[1]} on ${last[0]}`;
  } catch {
    return "unknown";
  }
}

const cpu = cpus();
console.error(`writing ${N} records per mode under ${root} ...`);
const rows: Row[] = [];
const progress = (r: Row) => {
  rows.push(r);
  console.error(`  ${r.name}: ${Math.round(r.records / r.seconds)} records/s`);
};
progress(await benchAuditLog("clawcage AuditLog, batched fsync (100 ms)", { intervalMs: 100 }, N));
progress(await benchAuditLog("clawcage AuditLog, no fsync", "none", N));
progress(await benchAuditLog("clawcage AuditLog, fsync per record", "always", Math.min(N, 3000)));
progress(await benchPlainBatched(N));
progress(benchAppendFileSync(Math.min(N, 50_000)));

const base = rows[0].records / rows[0].seconds;
console.log(`\n### Audit log throughput\n`);
console.log(
  `Machine: ${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} cores; Deno ${Deno.version.deno}; ` +
    `log on ${fileSystemOf(root)}. Event: one HTTP request record (~${
      Math.round(rows[3].bytes / rows[3].records)
    } B as plain JSON).\n`,
);
console.log("| mode | records | records/s | µs/record | bytes/record | vs batched AuditLog |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of rows) {
  const rate = r.records / r.seconds;
  console.log(
    `| ${r.name} | ${r.records} | ${Math.round(rate).toLocaleString("en-US")} | ` +
      `${(1e6 / rate).toFixed(2)} | ${Math.round(r.bytes / r.records)} | ${
        (rate / base).toFixed(2)
      }x |`,
  );
}
if (!values.dir) Deno.removeSync(root, { recursive: true });
