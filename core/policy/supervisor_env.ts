// Environment variables a policy names for its supervisor (`clawcage run`), never for the agent:
// the privacy backends' api_key_env (the router in the supervisor calls the cloud with them), the
// credentials' env (the egress proxy swaps placeholders for them) and the audit export's
// headers_env (tokens for the OTLP collector).

import type { Policy } from "./schema.ts";

export interface SupervisorVar {
  /** The variable's name. */
  name: string;
  /** Where the policy names it, e.g. "privacy.backends.cloud.api_key_env". */
  key: string;
  /** `clawcage run` refuses to start without it (headers_env is optional: no header is sent). */
  required: boolean;
}

/** Every variable the policy names for the supervisor, in the policy's order, each name once. */
export function supervisorVars(policy: Policy): SupervisorVar[] {
  const out: SupervisorVar[] = [];
  const add = (name: string, key: string, required: boolean) => {
    const seen = out.find((v) => v.name === name);
    if (seen) seen.required ||= required;
    else out.push({ name, key, required });
  };
  for (const [name, b] of Object.entries(policy.privacy?.backends ?? {})) {
    if (b.api_key_env !== undefined) {
      add(b.api_key_env, `privacy.backends.${name}.api_key_env`, true);
    }
  }
  for (const [name, c] of Object.entries(policy.credentials ?? {})) {
    if (c.env !== undefined) add(c.env, `credentials.${name}.env`, true);
  }
  for (const [header, env] of Object.entries(policy.audit?.export?.otlp?.headers_env ?? {})) {
    add(env, `audit.export.otlp.headers_env.${header}`, false);
  }
  return out;
}
