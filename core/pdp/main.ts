// `clawcage __pdp`: the policy-decision process's entry point (started by core/pdp/client.ts,
// never by users). Everything it will ever need is imported statically here, before lockdown.
//
// The policy arrives parsed and validated: the supervisor's client (core/pdp/client.ts) parses
// the YAML, checks it against the schema (errors with file:line:column) and sends the result as
// JSON. The PDP only compiles it, so it loads neither the YAML parser nor the schema library:
// without a JIT (see lockdown.ts) they cost it ~0.2 s of CPU at every start.

import { compilePolicy, decide } from "../policy/decide.ts";
import type { Policy } from "../policy/schema.ts";
import { type LoadedPolicy, servePdp } from "./server.ts";
import { trace, traceRole } from "../start_trace.ts";

/** Compiles a policy as the client sends it (JSON of a parsed, validated policy). */
export function loadPolicyJson(json: string): LoadedPolicy {
  const policy: unknown = JSON.parse(json);
  if (typeof policy !== "object" || policy === null || Array.isArray(policy)) {
    throw new Error("policy: expected a JSON object");
  }
  const compiled = compilePolicy(policy as Policy);
  return {
    sections: policy as Record<string, unknown>,
    decide: (req) => decide(compiled, req),
  };
}

export function pdpMain(_args: string[]): Promise<number> {
  traceRole("pdp");
  trace("modules loaded");
  if (Deno.stdin.isTerminal()) {
    console.error("clawcage: __pdp is an internal mode started by `clawcage run`");
    return Promise.resolve(2);
  }
  return servePdp((json) => loadPolicyJson(json));
}
