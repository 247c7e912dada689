// What access changes between two policies: network grants (binary -> host:port, with what
// each allows at request level) added, removed or changed, and changes to the static sections.

import type { Endpoint } from "./network.ts";
import type { Policy } from "./schema.ts";

export interface Grant {
  binary: string;
  host: string;
  port: number;
  /** What the grant allows once connected, e.g. "rest read-only (enforce)". */
  access: string;
  entry: string;
}

export interface PolicyDiff {
  added: Grant[];
  removed: Grant[];
  changed: { binary: string; host: string; port: number; before: string; after: string }[];
  /** Static and privacy sections: one line each ("filesystem_policy.read_write: + /data"). */
  sections: string[];
}

function describeMatcher(m: { method: string; path: string; query?: Record<string, unknown> }) {
  const q = m.query ? ` ?${Object.keys(m.query).sort().join("&")}` : "";
  return `${m.method} ${m.path}${q}`;
}

/** One phrase for what an endpoint allows at request level. */
export function describeAccess(ep: Endpoint): string {
  const parts: string[] = [];
  if (ep.protocol === "tcp") parts.push("tcp");
  else if (ep.protocol === undefined) parts.push("any traffic (no inspection)");
  else {
    parts.push(ep.protocol);
    if (ep.access) parts.push(ep.access);
    if (ep.rules) parts.push(`allow ${ep.rules.map((r) => describeMatcher(r.allow)).join(", ")}`);
    if (ep.deny_rules) parts.push(`deny ${ep.deny_rules.map(describeMatcher).join(", ")}`);
    parts.push(`(${ep.enforcement ?? "audit"})`);
  }
  if (ep.tls === "skip") parts.push("tls skip");
  if (ep.allowed_ips) parts.push(`allowed_ips ${ep.allowed_ips.join(",")}`);
  return parts.join(" ");
}

function grants(policy: Policy): Map<string, Grant[]> {
  const out = new Map<string, Grant[]>();
  for (const [entry, e] of Object.entries(policy.network_policies)) {
    for (const ep of e.endpoints) {
      const host = ep.host?.toLowerCase() ?? "(any host)";
      for (const port of ep.ports ?? [ep.port!]) {
        for (const b of e.binaries) {
          const key = `${b.path} -> ${host}:${port}`;
          const g = { binary: b.path, host, port, access: describeAccess(ep), entry };
          out.set(key, [...(out.get(key) ?? []), g]);
        }
      }
    }
  }
  return out;
}

function accessOf(list: Grant[]): string {
  return [...new Set(list.map((g) => g.access))].sort().join(" | ");
}

function listDiff(name: string, before: string[], after: string[]): string[] {
  const out: string[] = [];
  for (const p of after) if (!before.includes(p)) out.push(`${name}: + ${p}`);
  for (const p of before) if (!after.includes(p)) out.push(`${name}: - ${p}`);
  return out;
}

function valueDiff(name: string, before: unknown, after: unknown): string[] {
  const a = JSON.stringify(before);
  const b = JSON.stringify(after);
  return a === b ? [] : [`${name}: ${a ?? "(none)"} -> ${b ?? "(none)"}`];
}

export function diffPolicies(a: Policy, b: Policy): PolicyDiff {
  const ga = grants(a);
  const gb = grants(b);
  const diff: PolicyDiff = { added: [], removed: [], changed: [], sections: [] };
  for (const [key, list] of gb) {
    const before = ga.get(key);
    if (!before) diff.added.push(...list);
    else if (accessOf(before) !== accessOf(list)) {
      const { binary, host, port } = list[0];
      diff.changed.push({ binary, host, port, before: accessOf(before), after: accessOf(list) });
    }
  }
  for (const [key, list] of ga) if (!gb.has(key)) diff.removed.push(...list);
  const fa = a.filesystem_policy;
  const fb = b.filesystem_policy;
  diff.sections.push(
    ...valueDiff("filesystem_policy.include_workdir", fa.include_workdir, fb.include_workdir),
    ...listDiff("filesystem_policy.read_only", fa.read_only, fb.read_only),
    ...listDiff("filesystem_policy.read_write", fa.read_write, fb.read_write),
    ...valueDiff("landlock.compatibility", a.landlock.compatibility, b.landlock.compatibility),
    ...valueDiff("process.run_as_user", a.process.run_as_user, b.process.run_as_user),
    ...valueDiff("process.run_as_group", a.process.run_as_group, b.process.run_as_group),
    ...valueDiff("privacy", a.privacy, b.privacy),
  );
  return diff;
}

export function isEmptyDiff(d: PolicyDiff): boolean {
  return !d.added.length && !d.removed.length && !d.changed.length && !d.sections.length;
}
