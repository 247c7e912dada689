// Audit export throughput: records/s through AuditLog (batched fsync) while exporting to a
// loopback collector running in another process (syslog over TCP, OTLP/HTTP JSON), against the
// same log without export, measured in the same run; and the export path against a naive peer
// that POSTs each record on its own (what a logger without a queue does).
//
//   deno run --allow-all scripts/bench/audit_export.ts [--records N]

import { join } from "node:path";
import { parseArgs } from "node:util";
import type { AuditEvent } from "../../core/audit/events.ts";
import { otlpBody } from "../../core/audit/export/otlp.ts";
import { AuditSession } from "../../core/audit/session.ts";
import { auditSettings } from "../../core/audit/settings.ts";
import { parsePolicy } from "../../core/policy/load.ts";
import { machineLine } from "./common.ts";

const { values } = parseArgs({ args: Deno.args, options: { records: { type: "string" } } });
const N = Number(values.records ?? 50_000);
const NAIVE = Math.min(N, 2000);
const root = Deno.makeTempDirSync({ prefix: "clawcage-export-bench-" });

// A collector in its own process: a TCP syslog sink and an OTLP/HTTP sink that parse what they
// get (octet-counted frames; JSON bodies) and answer 200.
const COLLECTOR = `
const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
(async () => { for await (const c of tcp) (async () => {
  const buf = new Uint8Array(1 << 16); let frames = 0;
  for (;;) { const n = await c.read(buf).catch(() => null); if (n === null) break;
    for (let i = 0; i < n; i++) if (buf[i] === 0x3c) frames++; }
})(); })();
const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
  const body = await req.json();
  void body.resourceLogs[0]?.scopeLogs[0]?.logRecords.length;
  return new Response("{}", { headers: { "content-type": "application/json" } });
});
console.log(JSON.stringify({ tcp: tcp.addr.port, http: http.addr.port }));
`;

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

interface Row {
  name: string;
  records: number;
  localSeconds: number;
  deliveredSeconds: number | null;
  dropped: number;
}

async function benchSession(name: string, exportYaml: string | null): Promise<Row> {
  const dir = join(root, name.replace(/\W+/g, "-"));
  const policy = parsePolicy(
    `version: 1\naudit:\n  log_dir: ${dir}\n  key_dir: ${join(root, "key")}\n` +
      (exportYaml ? `  export:\n    queue_max: ${N}\n${exportYaml}` : ""),
    "bench.yaml",
  );
  const s = await AuditSession.open(auditSettings(policy.audit), {
    sandbox: "bench",
    onFailure: (r) => {
      throw new Error(r);
    },
  });
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    s.record(event(i));
    if (i % 1000 === 999) await new Promise((r) => setTimeout(r, 0));
  }
  await s.flush();
  const localSeconds = (performance.now() - t0) / 1000;
  let deliveredSeconds: number | null = null;
  if (exportYaml) {
    const deadline = performance.now() + 60_000;
    while (s.exportStats()[0].sent < N && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    deliveredSeconds = (performance.now() - t0) / 1000;
  }
  const dropped = s.exportStats()[0]?.dropped ?? 0;
  await s.close(5000);
  return { name, records: N, localSeconds, deliveredSeconds, dropped };
}

async function benchNaive(url: string): Promise<Row> {
  const t0 = performance.now();
  for (let i = 0; i < NAIVE; i++) {
    const line = JSON.stringify({ seq: i + 1, time: new Date().toISOString(), event: event(i) });
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(otlpBody([line], "bench")),
    });
    await res.body?.cancel();
  }
  const s = (performance.now() - t0) / 1000;
  return {
    name: "naive peer: one OTLP POST per record",
    records: NAIVE,
    localSeconds: s,
    deliveredSeconds: s,
    dropped: 0,
  };
}

const collector = new Deno.Command(Deno.execPath(), {
  args: ["eval", COLLECTOR],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = collector.stdout.getReader();
const ports = JSON.parse(new TextDecoder().decode((await reader.read()).value!).trim());
reader.releaseLock();
const otlpUrl = `http://127.0.0.1:${ports.http}/v1/logs`;

try {
  console.log(machineLine());
  console.log(`Deno ${Deno.version.deno}; ${N} records per mode; collector in another process\n`);
  const rows: Row[] = [];
  rows.push(await benchSession("AuditLog, no export", null));
  rows.push(
    await benchSession(
      "AuditLog + syslog TCP export",
      `    syslog:\n      target: tcp://127.0.0.1:${ports.tcp}\n`,
    ),
  );
  rows.push(
    await benchSession("AuditLog + OTLP/HTTP export", `    otlp:\n      url: ${otlpUrl}\n`),
  );
  rows.push(await benchNaive(otlpUrl));
  const base = rows[0].records / rows[0].localSeconds;
  const otlpRate = rows[2].records / rows[2].deliveredSeconds!;
  console.log(
    "| mode | records | local records/s | vs no export | exported records/s | dropped |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    const local = r.records / r.localSeconds;
    const exported = r.deliveredSeconds ? r.records / r.deliveredSeconds : null;
    console.log(
      `| ${r.name} | ${r.records} | ${Math.round(local).toLocaleString("en-US")} | ` +
        `${(local / base).toFixed(2)}x | ${
          exported ? Math.round(exported).toLocaleString("en-US") : "-"
        } | ${r.dropped} |`,
    );
  }
  const naiveRate = rows[3].records / rows[3].deliveredSeconds!;
  console.log(
    `\nOTLP export through the queue (batches of 512) delivers ${
      (otlpRate / naiveRate).toFixed(1)
    }x the records/s of one POST per record.`,
  );
} finally {
  collector.kill("SIGTERM");
  await collector.status;
  await collector.stdout.cancel().catch(() => {});
  Deno.removeSync(root, { recursive: true });
}
