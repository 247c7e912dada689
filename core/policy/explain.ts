// Explains a decision for people: the decision itself, and when it is a denial, the endpoint
// (and rule) that came closest to allowing the request, with each thing that did not match.

import {
  canonicalPath,
  type CompiledEndpoint,
  type CompiledPolicy,
  decide,
  normalizeHost,
  parseQuery,
} from "./decide.ts";
import type { Decision, DecisionRequest } from "./decision.ts";
import { editDistance } from "./load.ts";

export interface NearMiss {
  entry: string;
  /** "endpoints[0]" or, at request level, "endpoints[0].rules[1]". */
  rule: string;
  /** What did not match, one phrase each. */
  mismatches: string[];
}

export interface Explanation {
  decision: Decision;
  /** Denials only: the closest endpoint or rule; absent when the policy has no endpoints. */
  nearest?: NearMiss;
}

function hostMatches(ep: CompiledEndpoint, host: string): boolean {
  return ep.host === undefined || (ep.hostRe ? ep.hostRe.test(host) : ep.host === host);
}

function binaryMatches(ep: CompiledEndpoint, req: DecisionRequest): boolean {
  const one = (binary: string) =>
    binary !== "" &&
    ep.binaries.some((b) => (b.exact !== undefined ? b.exact === binary : b.re!.test(binary)));
  return one(req.binary) || (req.ancestors ?? []).some(one);
}

interface Candidate extends NearMiss {
  score: number;
  distance: number;
}

function requestMisses(ep: CompiledEndpoint, req: DecisionRequest): Candidate[] {
  const method = req.method!.toUpperCase();
  const canonical = canonicalPath(req.path!, ep.allowEncodedSlash);
  if ("error" in canonical) {
    return [{
      entry: ep.entry,
      rule: `endpoints[${ep.index}]`,
      mismatches: [`path ${req.path}: ${canonical.error}`],
      score: 1,
      distance: 0,
    }];
  }
  const path = canonical.path;
  const query = parseQuery(req.query);
  const out: Candidate[] = [];
  for (const m of ep.allow) {
    const misses: string[] = [];
    if (
      !(m.methods === null || m.methods.has(method) || (method === "HEAD" && m.methods.has("GET")))
    ) {
      misses.push(`method ${method} is not ${[...m.methods].join(" or ")}`);
    }
    if (m.path !== null && !m.path.test(path)) {
      misses.push(`path ${path} does not match ${m.pathText}`);
    }
    for (const q of m.query) {
      const values = query.get(q.name);
      const patterns = q.values.map((g) => g.pattern).join(" or ");
      if (!values?.length) misses.push(`query parameter ${q.name} is missing (${patterns})`);
      else if (!values.every((v) => q.values.some((g) => g.test(v)))) {
        misses.push(`query parameter ${q.name} does not match ${patterns}`);
      }
    }
    out.push({
      entry: ep.entry,
      rule: m.rule,
      mismatches: misses,
      score: misses.length,
      distance: m.path === null ? 0 : editDistance(path, m.pathText),
    });
  }
  return out;
}

/** The decision for `req`, and for a denial the nearest endpoint or rule and why it missed. */
export function explain(compiled: CompiledPolicy, req: DecisionRequest): Explanation {
  const decision = decide(compiled, req);
  if (decision.verdict !== "deny") return { decision };
  if (decision.entry && decision.rule?.includes(".deny_rules[")) {
    const mismatches = ["the request matches this deny rule, and deny rules beat allow rules"];
    return { decision, nearest: { entry: decision.entry, rule: decision.rule, mismatches } };
  }
  const host = normalizeHost(req.host);
  const candidates: Candidate[] = [];
  for (const ep of compiled.endpoints) {
    const misses: string[] = [];
    let score = 0;
    if (!hostMatches(ep, host)) {
      misses.push(`host ${host} does not match ${ep.host}`);
      score += 3;
    }
    if (!ep.ports.has(req.port)) {
      misses.push(`port ${req.port} is not ${[...ep.ports].join(" or ")}`);
      score += 1;
    }
    if (!binaryMatches(ep, req)) {
      const allowed = ep.binaries.map((b) => b.text).join(", ") || "no binaries";
      misses.push(`binary ${req.binary || "(unknown)"} is not one of: ${allowed}`);
      score += 2;
    }
    const distance = ep.host === undefined ? 0 : editDistance(host, ep.host);
    if (misses.length === 0 && req.method !== undefined && req.path !== undefined && ep.inspect) {
      candidates.push(...requestMisses(ep, req));
    } else {
      candidates.push({
        entry: ep.entry,
        rule: `endpoints[${ep.index}]`,
        mismatches: misses,
        score,
        distance,
      });
    }
  }
  // Candidates without mismatches were overruled elsewhere (the decision says why).
  const misses = candidates.filter((c) => c.mismatches.length > 0);
  if (misses.length === 0) return { decision };
  // A near host (a typo) matters most; then the fewest mismatches.
  const hostMiss = (c: Candidate) => (c.mismatches.some((m) => m.startsWith("host ")) ? 1 : 0);
  misses.sort((a, b) =>
    hostMiss(a) - hostMiss(b) || (hostMiss(a) ? a.distance - b.distance : 0) ||
    a.score - b.score || a.distance - b.distance
  );
  const { entry, rule, mismatches } = misses[0];
  return { decision, nearest: { entry, rule, mismatches } };
}
