// `deno task bench policy [--decisions N]`: in-process policy decisions for a policy with 200
// network_policies entries: decisions per second and p50/p99 latency of clawcage's decide(),
// against a peer measured in the same run: a naive linear matcher built on picomatch (the
// glob library most Node tools use), with its globs compiled once, that walks every endpoint
// and rule of the policy for each request. Both answer the same requests; the run prints how
// often their verdicts agree (a sanity check that they do the same work).
//
// Goal (issue 3): p99 under 100 microseconds in-process.

import { parseArgs } from "node:util";
import picomatch from "picomatch";
import { compilePolicy, decide } from "../../core/policy/decide.ts";
import type { DecisionRequest } from "../../core/policy/decision.ts";
import { type Policy, policySchema } from "../../core/policy/schema.ts";
import { machineLine, median, percentile } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { decisions: { type: "string", default: "10000" } },
});
const DECISIONS = Number(values.decisions);
const ENTRIES = 200;

/** Deterministic pseudo-random numbers (mulberry32), so every run asks the same questions. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(42);
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];

const BINARIES = ["/usr/bin/curl", "/usr/bin/node", "/usr/bin/python3.12", "/usr/bin/git"];
const METHODS = ["GET", "POST", "PUT", "DELETE"];
const WORDS = ["repos", "users", "v1", "v2", "items", "admin", "files", "search"];

function buildPolicy(): Policy {
  const network_policies: Record<string, unknown> = {};
  for (let i = 0; i < ENTRIES; i++) {
    const endpoints = [];
    for (let j = 0; j < 1 + (i % 3); j++) {
      const host = j === 2 ? `*.svc${i}.example.net` : `api${j}.svc${i}.example.com`;
      if (j === 1) {
        endpoints.push({ host, port: 443 });
        continue;
      }
      endpoints.push({
        host,
        port: 443,
        protocol: "rest",
        enforcement: "enforce",
        rules: Array.from({ length: 5 }, () => ({
          allow: { method: pick(METHODS), path: `/${pick(WORDS)}/*/${pick(WORDS)}/**` },
        })),
        deny_rules: [{ method: "*", path: `/admin/**` }],
      });
    }
    network_policies[`entry${i}`] = {
      endpoints,
      binaries: [{ path: pick(BINARIES) }, { path: "/usr/lib/jvm/*/bin/java" }],
    };
  }
  return policySchema.parse({ version: 1, network_policies });
}

function buildRequests(n: number): DecisionRequest[] {
  const out: DecisionRequest[] = [];
  for (let k = 0; k < n; k++) {
    const i = Math.floor(rand() * ENTRIES * 1.2); // some hosts are in no entry
    const host = rand() < 0.2 ? `x${k % 7}.svc${i}.example.net` : `api0.svc${i}.example.com`;
    const req: DecisionRequest = { binary: pick(BINARIES), host, port: rand() < 0.95 ? 443 : 80 };
    if (rand() < 0.7) {
      req.method = pick(METHODS);
      req.path = `/${pick(WORDS)}/${k % 13}/${pick(WORDS)}/x/${k % 5}`;
      req.query = "";
    }
    out.push(req);
  }
  return out;
}

/** The peer: every endpoint and rule checked in order with picomatch matchers. */
function buildPeer(policy: Policy) {
  type M = (s: string) => boolean;
  const dots = (h: string) => h.replaceAll(".", "/");
  const eps: {
    host: M;
    port: number;
    bins: M[];
    rest: boolean;
    allow: { method: string; path: M }[];
    deny: { method: string; path: M }[];
  }[] = [];
  for (const entry of Object.values(policy.network_policies)) {
    const bins = entry.binaries.map((b) => picomatch(b.path) as M);
    for (const ep of entry.endpoints) {
      const host = picomatch(dots(ep.host!)) as M;
      eps.push({
        host: (h) => host(dots(h)),
        port: ep.port!,
        bins,
        rest: ep.protocol === "rest",
        allow: (ep.rules ?? []).map((r) => ({
          method: r.allow.method,
          path: picomatch(r.allow.path) as M,
        })),
        deny: (ep.deny_rules ?? []).map((r) => ({
          method: r.method,
          path: picomatch(r.path) as M,
        })),
      });
    }
  }
  return (req: DecisionRequest): string => {
    let verdict = "deny";
    for (const ep of eps) {
      if (ep.port !== req.port || !ep.host(req.host) || !ep.bins.some((b) => b(req.binary))) {
        continue;
      }
      if (req.method === undefined || !ep.rest) return "allow";
      const hit = (r: { method: string; path: M }) =>
        (r.method === "*" || r.method === req.method) && r.path(req.path!);
      if (ep.deny.some(hit)) return "deny";
      if (ep.allow.some(hit)) verdict = "allow";
    }
    return verdict;
  };
}

function measure(name: string, fn: (r: DecisionRequest) => unknown, reqs: DecisionRequest[]) {
  for (let i = 0; i < Math.min(5000, reqs.length); i++) fn(reqs[i]); // warm up the JIT
  // Throughput: a tight loop, no timer calls inside.
  const t0 = performance.now();
  for (let i = 0; i < reqs.length; i++) fn(reqs[i]);
  const perSecond = reqs.length / ((performance.now() - t0) / 1000);
  // Latency: each decision timed on its own.
  const lat: number[] = new Array(reqs.length);
  for (let i = 0; i < reqs.length; i++) {
    const a = performance.now();
    fn(reqs[i]);
    lat[i] = (performance.now() - a) * 1000;
  }
  const r = { name, perSecond, p50: median(lat), p99: percentile(lat, 99) };
  console.log(
    `${name.padEnd(28)} ${Math.round(r.perSecond).toLocaleString("en").padStart(12)} decisions/s` +
      `   p50 ${r.p50.toFixed(2).padStart(7)} µs   p99 ${r.p99.toFixed(2).padStart(7)} µs`,
  );
  return r;
}

console.log(machineLine());
try {
  const load = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  console.log(`load average: ${load} (latency tails grow with it; compare the ratio)`);
} catch { /* not Linux */ }
const policy = buildPolicy();
const endpointCount = Object.values(policy.network_policies).reduce(
  (n, e) => n + e.endpoints.length,
  0,
);
const c0 = performance.now();
const compiled = compilePolicy(policy);
const compileMs = performance.now() - c0;
const peer = buildPeer(policy);
const reqs = buildRequests(DECISIONS);
console.log(
  `policy: ${ENTRIES} entries, ${endpointCount} endpoints (compiled in ${
    compileMs.toFixed(1)
  } ms); ${DECISIONS} requests, ~70% request level`,
);

let agree = 0;
const sample = reqs.slice(0, 5000);
for (const r of sample) {
  const ours = decide(compiled, r).verdict;
  if ((ours === "deny" ? "deny" : "allow") === peer(r)) agree++;
}
console.log(
  `verdicts agree with the peer on ${((agree / sample.length) * 100).toFixed(2)}% of requests`,
);

const ours = measure("clawcage decide()", (r) => decide(compiled, r), reqs);
const theirs = measure("peer: linear picomatch", peer, reqs);
console.log(
  `ratio: clawcage has ${(ours.perSecond / theirs.perSecond).toFixed(1)}x the peer's throughput; ` +
    `its p50 is ${(theirs.p50 / ours.p50).toFixed(1)}x and p99 ${
      (theirs.p99 / ours.p99).toFixed(1)
    }x ` +
    `lower`,
);
console.log(`goal p99 < 100 µs: ${ours.p99 < 100 ? "met" : "NOT met"} (${ours.p99.toFixed(2)} µs)`);
