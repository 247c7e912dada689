// The decision contract shared by the pure decision function (decide.ts), the policy-decision
// process (`clawcage __pdp`) and the egress proxy. Types only: one place for the shape of a
// question and its answer.

/** allow: pass. deny: refuse. audit-allow: pass, because the entry's enforcement is `audit`. */
export type Verdict = "allow" | "deny" | "audit-allow";

/**
 * A question from the egress proxy.
 *
 * Connection level (at CONNECT, or the first request of a plain-HTTP connection): `method`
 * and `path` are absent. Request level (each HTTP request the proxy can see, plain HTTP or
 * inspected HTTPS): `method` and `path` are present.
 */
export interface DecisionRequest {
  /** Absolute path of the executable that opened the connection; "" when unknown. */
  binary: string;
  /**
   * Executables of the parent processes of `binary`'s process, nearest first (from /proc, as
   * the kernel reports them). OpenShell matches a policy's `binaries` against the executable or
   * any of its parents (so a rule for /usr/bin/node covers the curl that node starts); absent
   * or empty: only `binary` is matched.
   */
  ancestors?: string[];
  /** Host as the agent asked for it, lower-case, without a trailing dot; or an IP literal. */
  host: string;
  port: number;
  /** Upper-case HTTP method. */
  method?: string;
  /** Request path without the query string, as sent (not percent-decoded). */
  path?: string;
  /** Raw query string without the leading "?"; "" when there is none. */
  query?: string;
}

export interface Decision {
  verdict: Verdict;
  /** Name of the `network_policies` entry that decided, when one did. */
  entry?: string;
  /** The rule inside the entry, e.g. "endpoints[0]", "rules[2]", "deny_rules[0]", "access: read-only". */
  rule?: string;
  /** One human sentence: why. Denials name what is missing, so the agent can ask for it. */
  reason: string;
  /**
   * Connection level only: the matching endpoint has request-level rules (`protocol: rest` with
   * `access` or `rules`/`deny_rules`), so the proxy must see every request (terminating TLS
   * unless `tls: skip`) and ask again with method and path.
   */
  inspect: boolean;
  /** Connection level only: `tls: skip` on the matching endpoint (tunnel without inspection). */
  tlsSkip: boolean;
  /** Connection level only: CIDRs/IPs from `allowed_ips` that the SSRF guard may let through. */
  allowedIps: string[];
}
