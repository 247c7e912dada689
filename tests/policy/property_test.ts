// Property tests of decide() against random policies and requests (fast-check). The oracle is
// an independent, naive matcher (RegExp built from the glob) over the same policy.

import assert from "node:assert/strict";
import fc from "fast-check";
import { compilePolicy, decide } from "../../core/policy/decide.ts";
import type { DecisionRequest } from "../../core/policy/decision.ts";
import { type Policy, policySchema } from "../../core/policy/schema.ts";

const HOSTS = [
  "api.example.com",
  "a.example.com",
  "x.cdn.example.com",
  "a.b.cdn.example.com",
  "evil.com",
];
const HOST_PATTERNS = [
  "api.example.com",
  "a.example.com",
  "*.cdn.example.com",
  "**.cdn.example.com",
];
const PORTS = [80, 443, 8080];
const BINARIES = ["/usr/bin/curl", "/usr/bin/node", "/bin/sh", "/usr/local/bin/x", ""];
const BINARY_PATTERNS = ["/usr/bin/curl", "/usr/bin/node", "/usr/bin/*", "/usr/**"];
const METHODS = ["GET", "POST", "DELETE", "HEAD", "PUT"];
const SEGMENTS = ["a", "b", "private", "x"];
const RUNS = 400;

const pathGlob = fc.array(fc.constantFrom(...SEGMENTS, "*", "**"), { minLength: 1, maxLength: 3 })
  .map((s) => "/" + s.join("/"));
const matcher = fc.record({ method: fc.constantFrom(...METHODS, "*"), path: pathGlob });

function endpointArb(enforcement: fc.Arbitrary<"enforce" | "audit">) {
  return fc.oneof(
    fc.record({ host: fc.constantFrom(...HOST_PATTERNS), port: fc.constantFrom(...PORTS) }),
    fc.record({
      host: fc.constantFrom(...HOST_PATTERNS),
      ports: fc.subarray(PORTS, { minLength: 1 }),
      protocol: fc.constant("rest"),
      enforcement,
      access: fc.constantFrom("read-only", "read-write", "full"),
      deny_rules: fc.array(matcher, { minLength: 1, maxLength: 3 }),
    }),
    fc.record({
      host: fc.constantFrom(...HOST_PATTERNS),
      port: fc.constantFrom(...PORTS),
      protocol: fc.constant("rest"),
      enforcement,
      rules: fc.array(matcher.map((allow) => ({ allow })), { minLength: 1, maxLength: 3 }),
      deny_rules: fc.option(fc.array(matcher, { minLength: 1, maxLength: 3 }), { nil: undefined }),
    }),
  ).map((ep) => JSON.parse(JSON.stringify(ep)));
}

function policyArb(enforcement: fc.Arbitrary<"enforce" | "audit">) {
  return fc.dictionary(
    fc.constantFrom("e1", "e2", "e3", "e4"),
    fc.record({
      endpoints: fc.array(endpointArb(enforcement), { maxLength: 3 }),
      binaries: fc.subarray(BINARY_PATTERNS).map((ps) => ps.map((path) => ({ path }))),
    }),
  ).map((network_policies): Policy => policySchema.parse({ version: 1, network_policies }));
}

const requestArb: fc.Arbitrary<DecisionRequest> = fc.record({
  binary: fc.constantFrom(...BINARIES),
  host: fc.constantFrom(...HOSTS),
  port: fc.constantFrom(...PORTS, 22),
  method: fc.option(fc.constantFrom(...METHODS), { nil: undefined }),
  path: fc.array(fc.constantFrom(...SEGMENTS, "..", "%2e%2e", ""), { maxLength: 4 })
    .map((s) => "/" + s.join("/")),
  query: fc.constant(""),
}).map((r) => (r.method === undefined ? { ...r, path: undefined } : r));

// ---- the oracle: naive, independent of core/policy/glob.ts -------------------------------

function naiveGlob(pattern: string, sep: string): RegExp {
  const not = sep === "." ? "[^.]" : "[^/]";
  const parts = pattern.split(sep).map((seg) =>
    seg === "**"
      ? "\u0000"
      : seg.split("").map((c) => (c === "*" ? `${not}*` : c.replace(/[.+?^${}()|[\]\\]/g, "\\$&")))
        .join("")
  );
  const body = parts.join(sep === "." ? "\\." : "/").replaceAll("\u0000", ".+");
  return new RegExp(`^${body}$`);
}

function naivePath(raw: string): string | null {
  const out: string[] = [];
  for (const seg0 of raw.split("/").slice(1)) {
    const seg = decodeURIComponent(seg0);
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (!out.length) return null;
      out.pop();
    } else out.push(seg);
  }
  return "/" + out.join("/");
}

interface Covering {
  ep: Policy["network_policies"][string]["endpoints"][number];
}

/** Endpoints whose host, port and binary match, per the oracle. */
function covering(policy: Policy, r: DecisionRequest): Covering[] {
  const out: Covering[] = [];
  for (const entry of Object.values(policy.network_policies)) {
    const binOk = r.binary !== "" &&
      entry.binaries.some((b) => naiveGlob(b.path, "/").test(r.binary));
    if (!binOk) continue;
    for (const ep of entry.endpoints) {
      const ports = ep.ports ?? [ep.port];
      if (!ports.includes(r.port)) continue;
      if (!naiveGlob(ep.host!, ".").test(r.host)) continue;
      out.push({ ep });
    }
  }
  return out;
}

function denyRuleHits(ep: Covering["ep"], method: string, path: string): boolean {
  return (ep.deny_rules ?? []).some((d) =>
    (d.method === "*" || d.method === method || (method === "HEAD" && d.method === "GET")) &&
    naiveGlob(d.path, "/").test(path)
  );
}

const params = { numRuns: RUNS, seed: Number(Deno.env.get("PROPERTY_SEED") ?? 20261127) };

Deno.test("property: deny by default (anything not covered by an entry is denied)", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("enforce" as const, "audit" as const).chain((e) => policyArb(fc.constant(e))),
      requestArb,
      (policy, r) => {
        const d = decide(compilePolicy(policy), r);
        const cover = covering(policy, r);
        if (cover.length === 0) assert.equal(d.verdict, "deny", d.reason);
        else if (r.method === undefined) assert.equal(d.verdict, "allow", d.reason);
      },
    ),
    params,
  );
});

Deno.test("property: deny_rules always win under enforce", () => {
  fc.assert(
    fc.property(policyArb(fc.constant("enforce")), requestArb, (policy, r) => {
      if (r.method === undefined) return;
      const path = naivePath(r.path!);
      const d = decide(compilePolicy(policy), r);
      if (path === null) {
        // A path that climbs above / never gets through an enforce endpoint with rules.
        if (covering(policy, r).some((c) => c.ep.protocol === "rest")) {
          assert.equal(d.verdict, "deny");
        }
        return;
      }
      const hit = covering(policy, r).some((c) =>
        c.ep.protocol === "rest" && denyRuleHits(c.ep, r.method!, path)
      );
      if (hit) assert.equal(d.verdict, "deny", `${r.method} ${r.path} -> ${path}: ${d.reason}`);
    }),
    params,
  );
});

Deno.test("property: under audit, a deny rule match is recorded, never a plain allow", () => {
  fc.assert(
    fc.property(policyArb(fc.constant("audit")), requestArb, (policy, r) => {
      if (r.method === undefined) return;
      const path = naivePath(r.path!);
      if (path === null) return;
      const cover = covering(policy, r);
      const d = decide(compilePolicy(policy), r);
      if (cover.some((c) => c.ep.protocol === "rest" && denyRuleHits(c.ep, r.method!, path))) {
        assert.equal(d.verdict, "audit-allow", d.reason);
      }
    }),
    params,
  );
});

Deno.test("property: audit never blocks a covered request", () => {
  fc.assert(
    fc.property(policyArb(fc.constant("audit")), requestArb, (policy, r) => {
      const d = decide(compilePolicy(policy), r);
      if (covering(policy, r).length > 0) assert.notEqual(d.verdict, "deny", d.reason);
    }),
    params,
  );
});

Deno.test("property: decide is deterministic and never throws on odd requests", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("enforce" as const, "audit" as const).chain((e) => policyArb(fc.constant(e))),
      fc.record({
        binary: fc.string(),
        host: fc.string(),
        port: fc.integer({ min: -1, max: 70000 }),
        method: fc.option(fc.string(), { nil: undefined }),
        path: fc.option(fc.string(), { nil: undefined }),
        query: fc.option(fc.string(), { nil: undefined }),
      }),
      (policy, r) => {
        const c = compilePolicy(policy);
        assert.deepEqual(decide(c, r), decide(c, r));
      },
    ),
    params,
  );
});
