// `clawcage __pdp`: the policy-decision process's entry point (started by core/pdp/client.ts,
// never by users). Everything it will ever need is imported statically here, before lockdown.

import { compilePolicy, decide } from "../policy/decide.ts";
import { parsePolicy } from "../policy/load.ts";
import { type LoadedPolicy, servePdp } from "./server.ts";
import { trace, traceRole } from "../start_trace.ts";

/** Parses and compiles policy text (errors carry file:line:column). */
export function loadPolicyText(text: string, file: string): LoadedPolicy {
  const policy = parsePolicy(text, file);
  const compiled = compilePolicy(policy);
  return {
    sections: policy as unknown as Record<string, unknown>,
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
  return servePdp(loadPolicyText);
}
