// Things in a valid policy that are probably not what its author meant: reported by
// `clawcage policy check` as warnings (the policy still loads).

import { compileGlob } from "./glob.ts";
import { matchesEveryProgram } from "./network.ts";
import type { Policy } from "./schema.ts";

export interface PolicyWarning {
  /** Where, as a key path: ["network_policies", "github", "endpoints", 0]. */
  path: (string | number)[];
  message: string;
  /**
   * A setting that loads (OpenShell accepts it) but restricts less than it reads: `clawcage run`
   * prints these at start as well.
   */
  ignored?: true;
}

export function policyWarnings(policy: Policy): PolicyWarning[] {
  const out: PolicyWarning[] = [];
  for (const [name, entry] of Object.entries(policy.network_policies)) {
    const at = ["network_policies", name];
    if (entry.endpoints.length > 0 && entry.binaries.length === 0) {
      out.push({ path: at, message: `entry ${name} lists no binaries, so it allows nothing` });
    }
    if (entry.binaries.length > 0 && entry.endpoints.length === 0) {
      out.push({ path: at, message: `entry ${name} lists no endpoints, so it allows nothing` });
    }
    entry.binaries.forEach((b, i) => {
      if (matchesEveryProgram(b.path)) {
        out.push({
          path: [...at, "binaries", i, "path"],
          ignored: true,
          message: `binary glob ${b.path} matches every program (e.g. /bin/sh and /tmp/x): this ` +
            `entry does not restrict which program may connect`,
        });
      }
      if (b.harness !== undefined) {
        out.push({
          path: [...at, "binaries", i, "harness"],
          ignored: true,
          message: "harness is deprecated in OpenShell and ignored",
        });
      }
    });
    entry.endpoints.forEach((ep, i) => {
      // Accepted as in OpenShell, with OpenShell's meaning: nothing. Said, since they read as
      // restrictions (`clawcage run` prints these too).
      if (ep.protocol === undefined) {
        for (const key of ["access", "rules", "deny_rules", "allow_encoded_slash"] as const) {
          if (ep[key] === undefined) continue;
          out.push({
            path: [...at, "endpoints", i, key],
            ignored: true,
            message: `${key} is ignored: without protocol: rest or websocket the endpoint is ` +
              `tunnelled (L4) and no request is inspected, as in OpenShell; add the protocol to ` +
              `enforce it`,
          });
        }
      }
      if (ep.tls === "terminate" || ep.tls === "passthrough") {
        out.push({
          path: [...at, "endpoints", i, "tls"],
          ignored: true,
          message: `tls: ${ep.tls} is deprecated in OpenShell and has no effect: rest and ` +
            `websocket endpoints are inspected, others tunnelled; remove it (or use tls: skip)`,
        });
      }
      // `/x/**` needs at least one segment after /x: the bare /x (and /x/) is not denied, which
      // matters when an allow rule lets it through.
      ep.deny_rules?.forEach((d, j) => {
        if (!d.path.endsWith("/**") || d.path === "/**") return;
        const bare = d.path.slice(0, -3);
        const matches = (path: string) => path === "**" || compileGlob(path, "/").test(bare);
        const covered = ep.deny_rules!.some((o) => matches(o.path));
        const allowed = ep.access !== undefined ||
          (ep.rules ?? []).some((r) => matches(r.allow.path));
        if (allowed && !covered) {
          out.push({
            path: [...at, "endpoints", i, "deny_rules", j, "path"],
            message: `deny rule ${d.path} does not cover ${bare} itself (** needs a segment); ` +
              `add a deny rule for ${bare} too`,
          });
        }
      });
      const inspected = ep.protocol === "rest" || ep.protocol === "websocket";
      if (inspected && ep.enforcement === undefined) {
        out.push({
          path: [...at, "endpoints", i],
          message: "enforcement defaults to audit (as in OpenShell): requests that break this " +
            "endpoint's rules are allowed and only recorded; add enforcement: enforce to block them",
        });
      }
    });
  }
  return out;
}
