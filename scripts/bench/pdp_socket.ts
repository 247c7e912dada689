// Policy decisions over the PDP's socket vs in-process, for a policy with 200 network entries:
// latency of one decision at a time (p50/p99) and throughput with 64 decisions in flight.
// The peer is the same decide() called in-process in the same run; ratios are socket/in-process.
//
//   deno run --allow-all scripts/bench/pdp_socket.ts [--decisions N]

import { hrtime } from "node:process";
import { parseArgs } from "node:util";
import { PdpClient, policyWire } from "../../core/pdp/client.ts";
import { loadPolicyJson } from "../../core/pdp/main.ts";
import type { DecisionRequest } from "../../core/policy/decision.ts";
import { machineLine, median, percentile } from "./common.ts";

/** Policy YAML as the PDP loads it (parsed and validated by the client first). */
const loadPolicyText = (text: string, file: string) => loadPolicyJson(policyWire(text, file));

const { values } = parseArgs({ args: Deno.args, options: { decisions: { type: "string" } } });
const N = Number(values.decisions ?? 20_000);
const ENTRIES = 200;

function policyText(): string {
  let y = "version: 1\nnetwork_policies:\n";
  for (let i = 0; i < ENTRIES; i++) {
    const host = i % 4 === 0 ? `"*.svc${i}.example.com"` : `api${i}.example.com`;
    const rest = i % 2 === 0
      ? `        protocol: rest
        enforcement: enforce
        rules:
          - allow: { method: GET, path: "/v1/**" }
          - allow: { method: POST, path: "/v1/items/*" }
        deny_rules:
          - { method: "*", path: "/v1/admin/**" }
`
      : "        enforcement: enforce\n";
    y += `  entry_${i}:
    endpoints:
      - host: ${host}
        port: 443
${rest}    binaries:
      - path: /usr/bin/curl
      - path: /usr/lib/node*/bin/node
`;
  }
  return y;
}

/** A fixed mix: connection and request level, allowed and denied, across all entries. */
function requests(): DecisionRequest[] {
  const out: DecisionRequest[] = [];
  for (let i = 0; i < 1000; i++) {
    const e = (i * 37) % ENTRIES;
    const host = e % 4 === 0 ? `x.svc${e}.example.com` : `api${e}.example.com`;
    const binary = i % 5 === 0 ? "/usr/bin/wget" : "/usr/bin/curl";
    const req: DecisionRequest = { binary, host: i % 7 === 0 ? "unknown.org" : host, port: 443 };
    if (i % 2 === 0) {
      req.method = i % 6 === 0 ? "POST" : "GET";
      req.path = i % 10 === 0 ? "/v1/admin/users" : `/v1/items/${i}`;
      req.query = "";
    }
    out.push(req);
  }
  return out;
}

const us = (ns: bigint) => Number(ns) / 1000;
const fmt = (x: number) => x.toFixed(1).padStart(9);

const text = policyText();
const reqs = requests();
const loaded = loadPolicyText(text, "bench.yaml");

// In-process: one decision at a time.
for (let i = 0; i < 5000; i++) loaded.decide(reqs[i % reqs.length]);
const inLat: number[] = [];
const t0 = hrtime.bigint();
for (let i = 0; i < N; i++) {
  const s = hrtime.bigint();
  loaded.decide(reqs[i % reqs.length]);
  inLat.push(us(hrtime.bigint() - s));
}
const inRate = N / (Number(hrtime.bigint() - t0) / 1e9);

/** Over the socket, through the client the supervisor uses. */
async function overSocket(policy: string) {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-pdp-bench-" });
  const client = await PdpClient.start({
    policyText: policy,
    policyFile: "bench.yaml",
    runtimeDir: dir,
    deadlineMs: 5000,
  });
  try {
    for (let i = 0; i < 5000; i++) await client.decide(reqs[i % reqs.length]);
    const lat: number[] = [];
    let denied = 0;
    for (let i = 0; i < N; i++) {
      const s = hrtime.bigint();
      const d = await client.decide(reqs[i % reqs.length]);
      lat.push(us(hrtime.bigint() - s));
      if (d.verdict === "deny") denied++;
    }
    const t = hrtime.bigint();
    let next = 0;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < N) {
        next++;
        await client.decide(reqs[next % reqs.length]);
      }
    }));
    const rate = N / (Number(hrtime.bigint() - t) / 1e9);
    return { lat, rate, denied, sequentialRate: N / (lat.reduce((a, b) => a + b, 0) / 1e6) };
  } finally {
    await client.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const IN_FLIGHT = 64;
const full = await overSocket(text);
const empty = await overSocket("version: 1\n");

console.log(machineLine());
// Other processes compete for the CPU with both ends of the socket: say how busy the host was.
console.log(`load average during the run: ${Deno.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
console.log(`policy: ${ENTRIES} network entries; ${N} decisions per row (${full.denied} denied)`);
console.log(`${"".padEnd(44)}      p50 µs    p99 µs    decisions/s`);
const row = (name: string, lat: number[] | null, rate: number) =>
  console.log(
    `${name.padEnd(44)}${lat ? fmt(percentile(lat, 50)) : "        -"} ${
      lat ? fmt(percentile(lat, 99)) : "        -"
    }    ${Math.round(rate).toString().padStart(10)}`,
  );
row("in-process decide (peer)", inLat, inRate);
row("PDP socket, one at a time", full.lat, full.sequentialRate);
row(`PDP socket, ${IN_FLIGHT} in flight`, null, full.rate);
row("PDP socket, empty policy (transport only)", empty.lat, empty.sequentialRate);
row(`PDP socket, empty policy, ${IN_FLIGHT} in flight`, null, empty.rate);
/** p99 of each fifth of the run: a burst from another process spoils one fifth, not all. */
const fifths = (lat: number[]) =>
  Array.from({ length: 5 }, (_, k) => {
    const part = lat.slice((k * lat.length) / 5, ((k + 1) * lat.length) / 5);
    return percentile(part, 99);
  });
for (const [name, r] of [["policy", full], ["empty policy", empty]] as const) {
  const f = fifths(r.lat);
  console.log(
    `socket p99 per fifth of the run (${name}): ${f.map((x) => x.toFixed(0)).join(" ")} µs; ` +
      `median ${median(f).toFixed(0)} µs`,
  );
}
const p99 = percentile(full.lat, 99);
console.log(
  `ratio socket/in-process: p50 ${
    (percentile(full.lat, 50) / percentile(inLat, 50)).toFixed(1)
  }x, p99 ${(p99 / percentile(inLat, 99)).toFixed(1)}x; throughput ${
    (full.rate / inRate).toFixed(3)
  }x`,
);
const typical = median(fifths(full.lat));
console.log(
  `goal p99 over the socket < 1000 µs: whole run ${p99 < 1000 ? "met" : "NOT met"} ` +
    `(${p99.toFixed(0)} µs), median fifth ${typical < 1000 ? "met" : "NOT met"} ` +
    `(${typical.toFixed(0)} µs)`,
);
