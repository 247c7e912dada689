// Secrets the service hands to its children's supervisors, never to the agents: cloud keys and
// tokens from the service's own environment (systemd EnvironmentFile=/Environment=) or from
// systemd credentials (LoadCredential=, named in the configuration's `credentials:` maps).

import type { SupervisorVar } from "../policy/supervisor_env.ts";

/** A secret the service cannot provide (one line: who needs it, which variable, why). */
export class SecretError extends Error {}

/**
 * Reads `env -> credential name` from $CREDENTIALS_DIRECTORY (systemd LoadCredential=).
 * `what` names the map in messages ("router.credentials", "agents.a.credentials").
 */
export function readCredentials(map: Record<string, string>, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  const entries = Object.entries(map);
  if (entries.length === 0) return out;
  const dir = Deno.env.get("CREDENTIALS_DIRECTORY");
  if (!dir) {
    throw new SecretError(
      `${what} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=); it is not set`,
    );
  }
  for (const [env, cred] of entries) {
    try {
      out[env] = Deno.readTextFileSync(`${dir}/${cred}`).trim();
    } catch (e) {
      throw new SecretError(`${what}: credential ${cred} (for ${env}): ${(e as Error).message}`);
    }
  }
  return out;
}

/**
 * The variables an agent's policy names for its supervisor, with their values: from the agent's
 * `credentials:` (systemd credentials) first, else the service's environment. A required one
 * that has no value is a SecretError naming the agent, the variable and the policy.
 */
export function supervisorEnv(
  agent: string,
  policy: string,
  vars: SupervisorVar[],
  credentials: Record<string, string>,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Record<string, string> {
  const fromCredentials = readCredentials(credentials, `agents.${agent}.credentials`);
  const out: Record<string, string> = {};
  for (const v of vars) {
    const value = fromCredentials[v.name] ?? env(v.name);
    if (value !== undefined && value !== "") out[v.name] = value;
    else if (v.required) {
      throw new SecretError(
        `agent ${agent}: ${v.name} (${policy}: ${v.key}) is not set in the service's environment; ` +
          `set it with EnvironmentFile= or LoadCredential= and agents.${agent}.credentials`,
      );
    }
  }
  return out;
}
