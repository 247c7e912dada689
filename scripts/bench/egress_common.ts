// Shared by the egress benchmarks (egress.ts, egress_hops.ts): the allow-all proxy they measure,
// reading a child's announcement line, and a process's CPU time.

import { join } from "node:path";
import { InspectionCa } from "../../core/egress/ca.ts";
import { type AuditSink, EgressProxy } from "../../core/egress/proxy.ts";

/**
 * Our proxy as the benchmarks run it: allows everything on 127.0.0.0/8 and inspects the HTTPS
 * upstream's port (its CA from `dir/pki.json`). With `writeCa`, the inspection CA's certificate
 * goes to `dir` for the clients.
 */
export async function benchProxy(
  dir: string,
  httpsPort: number,
  opts: { writeCa: boolean; audit?: AuditSink },
): Promise<EgressProxy> {
  const pki = JSON.parse(Deno.readTextFileSync(join(dir, "pki.json")));
  const ca = await InspectionCa.create("bench");
  if (opts.writeCa) ca.writeCert(dir);
  return new EgressProxy({
    ...(opts.audit ? { audit: opts.audit } : {}),
    sandbox: "bench",
    decide: (q) =>
      Promise.resolve({
        verdict: "allow",
        reason: "bench",
        inspect: q.port === httpsPort,
        tlsSkip: false,
        allowedIps: ["127.0.0.0/8"],
      }),
    resolve: () => Promise.resolve(["127.0.0.1"]),
    inspection: { ca, upstreamCa: [pki.caPem] },
  });
}

/** Reads `stream` until `re` matches what it printed (e.g. a child's `PORT n` line). */
export async function readMatch(
  stream: ReadableStream<Uint8Array>,
  re: RegExp,
): Promise<RegExpMatchArray> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const m = buf.match(re);
    if (m) {
      reader.releaseLock();
      return m;
    }
    const { value, done } = await reader.read();
    if (done) throw new Error(`process ended before printing ${re}: ${buf}`);
    buf += value;
  }
}

/**
 * CPU seconds (user + system, plus its reaped children's with `children`) a process has used so
 * far, from /proc/PID/stat (clock ticks, USER_HZ 100).
 */
export function cpuSeconds(pid: number, children = false): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return (f[11] + f[12] + (children ? f[13] + f[14] : 0)) / 100;
}
