// The service configuration (/etc/clawcage/clawcage.yaml): which agents `clawcage service`
// runs, each as a `clawcage run` child, and the optional privacy router. Mistakes are reported
// as file:line:column, like policies.

import { dirname, resolve } from "node:path";
import { z } from "zod";
import { loadPolicyFile, parseYamlWithSchema, PolicyError } from "../policy/load.ts";
import { envVarName } from "../policy/fields.ts";
import { resolveUser, UnknownPrincipalError } from "../sandbox/users.ts";
import { type SupervisorVar, supervisorVars } from "../policy/supervisor_env.ts";
import { SecretError, supervisorEnv } from "./secrets.ts";

export const DEFAULT_CONFIG_PATH = "/etc/clawcage/clawcage.yaml";
export const DEFAULT_RUNTIME_DIR = "/run/clawcage";
export const DEFAULT_STATE_DIR = "/var/lib/clawcage";
/** Name of the status socket inside the runtime directory. */
export const STATUS_SOCKET = "status.sock";

const envName = envVarName(
  "environment variable names are letters, digits and '_', not starting with a digit",
);
const childName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
  message: "names are 1-64 letters, digits, '.', '_' and '-'",
});

const agentSchema = z.strictObject({
  /** The agent's command line (no shell: use ["sh", "-c", "..."] for one). */
  command: z.array(z.string().min(1)).min(1),
  /** Policy file (relative paths are relative to the configuration file). */
  policy: z.string().min(1),
  /** Run the agent as this user (overrides the policy's process.run_as_user). */
  user: z.union([z.string().min(1), z.number().int().min(0)]).optional(),
  /** Working directory of the agent (must exist). */
  workdir: z.string().min(1),
  /** Variables set for the agent (they travel in the environment, never on a command line). */
  env: z.record(envName, z.string()).default({}),
  /**
   * Environment variable -> systemd credential name (LoadCredential=NAME:...), for variables the
   * agent's policy names for its supervisor (api_key_env, credentials' env): they go to the
   * agent's `clawcage run`, never to the agent. Without an entry, the service's own environment.
   */
  credentials: z.record(envName, z.string().regex(/^[A-Za-z0-9._-]+$/)).default({}),
  /** When to start the agent again after it exits. */
  restart: z.enum(["always", "on-failure", "never"]).default("on-failure"),
  /** Landlock + seccomp only, no namespaces (for hosts without root). */
  rootless: z.boolean().default(false),
});

const routerSchema = z.strictObject({
  /** Policy file with a privacy section. */
  policy: z.string().min(1),
  listen: z.string().default("127.0.0.1:8787"),
  /** Environment variable -> systemd credential name (LoadCredential=NAME:...): cloud keys. */
  credentials: z.record(envName, z.string().regex(/^[A-Za-z0-9._-]+$/)).default({}),
  /** One JSON line per inference call (default: the service's stderr). */
  audit_file: z.string().min(1).optional(),
});

const restartSchema = z.strictObject({
  /** First delay after a failure; doubles after each failure. */
  initial_delay_ms: z.number().int().min(10).max(3_600_000).default(1000),
  /** The delay never grows beyond this. */
  max_delay_ms: z.number().int().min(10).max(3_600_000).default(60_000),
  /** A child that ran at least this long counts as healthy: the next delay starts over. */
  healthy_after_ms: z.number().int().min(10).max(86_400_000).default(30_000),
  /** Time between SIGTERM and SIGKILL when stopping a child. */
  stop_timeout_ms: z.number().int().min(10).max(600_000).default(10_000),
});

export const serviceConfigSchema = z.strictObject({
  version: z.literal(1),
  /** Where the status socket lives (0700 directory, 0600 socket). */
  runtime_dir: z.string().min(1).default(DEFAULT_RUNTIME_DIR),
  /** State (the router's HMAC key). */
  state_dir: z.string().min(1).default(DEFAULT_STATE_DIR),
  /** Root of the agents' audit logs (one directory per agent; default: the default audit dir). */
  audit_log: z.string().min(1).optional(),
  restart: restartSchema.default({
    initial_delay_ms: 1000,
    max_delay_ms: 60_000,
    healthy_after_ms: 30_000,
    stop_timeout_ms: 10_000,
  }),
  agents: z.record(childName, agentSchema).default({}),
  router: routerSchema.optional(),
}).superRefine((c, ctx) => {
  if (c.restart.max_delay_ms < c.restart.initial_delay_ms) {
    ctx.addIssue({
      code: "custom",
      path: ["restart", "max_delay_ms"],
      message: "max_delay_ms must not be below initial_delay_ms",
    });
  }
});

export type AgentConfig = z.infer<typeof agentSchema> & {
  /** Set by loadServiceConfig: the variables the agent's policy names for its supervisor. */
  supervisor_vars?: SupervisorVar[];
};
export type ServiceConfig = Omit<z.infer<typeof serviceConfigSchema>, "agents"> & {
  agents: Record<string, AgentConfig>;
};
export type RouterConfig = z.infer<typeof routerSchema>;

export class ConfigError extends Error {}

/**
 * Reads and validates the configuration. Relative paths become absolute (relative to the
 * file's directory); every agent's and the router's policy is loaded, so a broken policy is
 * reported before anything starts. `secrets: false` (`service --check`, which the installer runs
 * outside systemd's environment and credentials) skips checking that each agent's supervisor
 * secrets have values.
 */
export async function loadServiceConfig(
  path: string,
  opts: { secrets?: boolean } = {},
): Promise<ServiceConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (e as Error).message;
    throw new ConfigError(`${path}: cannot read the service configuration: ${why}`);
  }
  let config: ServiceConfig;
  try {
    config = parseYamlWithSchema(text, path, serviceConfigSchema, "service configuration");
  } catch (e) {
    if (e instanceof PolicyError) throw new ConfigError(e.message);
    throw e;
  }
  const base = dirname(resolve(path));
  const abs = (p: string) => resolve(base, p);
  config.runtime_dir = abs(config.runtime_dir);
  config.state_dir = abs(config.state_dir);
  if (config.audit_log) config.audit_log = abs(config.audit_log);
  for (const agent of Object.values(config.agents)) {
    agent.policy = abs(agent.policy);
    agent.workdir = abs(agent.workdir);
  }
  if (config.router) {
    config.router.policy = abs(config.router.policy);
    if (config.router.audit_file) config.router.audit_file = abs(config.router.audit_file);
  }
  const problems: string[] = [];
  const passwd = readOrEmpty("/etc/passwd");
  const isRoot = Deno.uid() === 0;
  const trusted = (what: string, file: string) => {
    const why = isRoot ? untrustedBecause(file) : null;
    if (why) problems.push(`${what}${file}: ${why}`);
  };
  trusted("", path);
  for (const [name, agent] of Object.entries(config.agents)) {
    try {
      const policy = await loadPolicyFile(agent.policy);
      trusted(`agent ${name}: `, agent.policy);
      agent.supervisor_vars = supervisorVars(policy);
      problems.push(...secretProblems(name, agent, opts.secrets ?? true));
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      problems.push(`agent ${name}: ${e.message}`);
    }
    if (!isDirectory(agent.workdir)) {
      problems.push(`agent ${name}: workdir ${agent.workdir} is not an existing directory`);
    }
    if (agent.user !== undefined) {
      try {
        resolveUser(agent.user, passwd);
      } catch (e) {
        if (!(e instanceof UnknownPrincipalError)) throw e;
        problems.push(`agent ${name}: ${e.message}`);
      }
    }
    if (!isRoot && !agent.rootless) {
      problems.push(
        `agent ${name}: namespaces need root; run the service as root or set rootless: true`,
      );
    }
  }
  if (config.router) {
    try {
      const policy = await loadPolicyFile(config.router.policy);
      if (!policy.privacy) problems.push(`router: ${config.router.policy}: no privacy section`);
      trusted("router: ", config.router.policy);
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      problems.push(`router: ${e.message}`);
    }
  }
  if (problems.length) throw new ConfigError(problems.join("\n"));
  return config;
}

/**
 * What keeps the agent's supervisor secrets from working or from staying out of the agent: one
 * that `env:` would also hand to the agent, a `credentials:` entry the policy does not name, and
 * (with `values`) a required one the service cannot provide.
 */
function secretProblems(name: string, agent: AgentConfig, values: boolean): string[] {
  const vars = agent.supervisor_vars ?? [];
  const problems: string[] = [];
  for (const v of vars) {
    if (v.name in agent.env) {
      problems.push(
        `agent ${name}: env: ${v.name} is a secret of the supervisor (${agent.policy}: ${v.key}); ` +
          `remove it from env:, which the agent sees (the service passes it to clawcage run only)`,
      );
    }
  }
  for (const env of Object.keys(agent.credentials)) {
    if (!vars.some((v) => v.name === env)) {
      problems.push(
        `agent ${name}: credentials: ${env} is not named by ${agent.policy} ` +
          `(api_key_env, credentials' env or headers_env)`,
      );
    }
  }
  if (problems.length || !values) return problems;
  try {
    supervisorEnv(name, agent.policy, vars, agent.credentials);
  } catch (e) {
    if (!(e instanceof SecretError)) throw e;
    problems.push(e.message);
  }
  return problems;
}

function readOrEmpty(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Why a file that decides what runs as root cannot be trusted (owned by another user, or
 * writable by group or others), or null when it can.
 */
export function untrustedBecause(path: string): string | null {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return null; // reported by whoever reads it
  }
  const mode = (info.mode ?? 0) & 0o777;
  if (info.uid !== 0) {
    return `owned by uid ${info.uid}, not root: refusing it, since it decides what runs as root`;
  }
  if (mode & 0o022) {
    return `mode ${
      mode.toString(8).padStart(4, "0")
    } lets other users change it: refusing it, since it decides what runs as root (chmod go-w)`;
  }
  return null;
}
