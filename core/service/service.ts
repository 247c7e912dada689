// `clawcage service`: runs the agents listed in the service configuration, each as a
// `clawcage run` child, and the privacy router; reloads on SIGHUP; answers status queries.

import { createHash } from "node:crypto";
import { join } from "node:path";
import { defaultAuditDir } from "../audit/paths.ts";
import { selfCommand, selfEnv } from "../self.ts";
import { loadPolicyFile } from "../policy/load.ts";
import { Child, type ChildSpec, type ChildStatus } from "./child.ts";
import type { AgentConfig, RouterConfig, ServiceConfig } from "./config.ts";
import { countDenials, type DenialCount } from "./denials.ts";
import { readCredentials, supervisorEnv } from "./secrets.ts";

export interface RouterBackend {
  name: string;
  type: string;
  role: "local" | "cloud" | "unused";
  base_url: string | null;
  model: string | null;
}

export interface ReloadReport {
  at: string;
  ok: boolean;
  /** One line per change: "agent a: started", "agent b: policy file changed, reload sent ...". */
  changes: string[];
  error?: string;
}

export interface ServiceStatus {
  pid: number;
  config: string;
  started: string;
  uptime_s: number;
  agents: (ChildStatus & { policy: string; command: string[] })[];
  router:
    | null
    | (ChildStatus & { listen: string; policy: string; backends: RouterBackend[] });
  denials_last_hour: DenialCount;
  last_reload: ReloadReport | null;
}

/**
 * An agent's changed policy file is passed to its `clawcage run` with SIGHUP: network_policies and
 * privacy reload live; a change to any other section is refused there (it says so in the agent's
 * log) and needs a restart.
 */
export const POLICY_RELOADED =
  "policy file changed, reload sent (SIGHUP): network_policies and privacy apply live; other sections need a restart (see the agent's log)";
export const POLICY_NOT_RUNNING =
  "policy file changed; the agent is not running, it will read it when it starts";

interface Entry {
  child: Child;
  /** Everything that, when changed, requires a restart. */
  key: string;
  policyHash: string;
}

/**
 * Each agent writes its own audit log (one writer per log directory): `<audit root>/<agent>`,
 * where the root is the configuration's `audit_log`, else the default audit directory.
 */
export function agentAuditDir(auditLog: string | undefined, name: string): string {
  return join(auditLog ?? defaultAuditDir(), name);
}

export function agentSpec(name: string, a: AgentConfig, auditLog?: string): ChildSpec {
  const args = ["run", "--policy", a.policy, "--workdir", a.workdir];
  args.push("--audit-dir", agentAuditDir(auditLog, name));
  if (a.user !== undefined) args.push("--user", String(a.user));
  if (a.rootless) args.push("--rootless");
  // Values travel in the environment (`-e NAME` passes it through), never on a command line.
  for (const k of Object.keys(a.env)) args.push("--env", k);
  args.push("--", ...a.command);
  // The secrets its policy names for the supervisor (cloud keys for inference.local, credentials
  // for the proxy): in `clawcage run`'s environment, without --env, so the agent never has them.
  const secrets = supervisorEnv(name, a.policy, a.supervisor_vars ?? [], a.credentials);
  return {
    name,
    argv: selfCommand(args),
    env: { ...selfEnv(), ...a.env, ...secrets },
    restart: a.restart,
  };
}

export function routerSpec(r: RouterConfig, stateDir: string): ChildSpec {
  const args = ["router", "--policy", r.policy, "--listen", r.listen];
  if (r.audit_file) args.push("--audit-file", r.audit_file);
  return {
    name: "router",
    argv: selfCommand(args),
    env: {
      ...selfEnv(),
      CLAWCAGE_STATE_DIR: stateDir,
      ...readCredentials(r.credentials, "router.credentials"),
    },
    restart: "always",
  };
}

async function fileHash(path: string): Promise<string> {
  try {
    return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
  } catch {
    return "unreadable";
  }
}

export class Service {
  #agents = new Map<string, Entry & { config: AgentConfig }>();
  #router: (Entry & { config: RouterConfig; backends: RouterBackend[] }) | null = null;
  #started = Date.now();
  #lastReload: ReloadReport | null = null;

  constructor(
    private config: ServiceConfig,
    readonly configPath: string,
    private log: (line: string) => void,
  ) {}

  async start(): Promise<void> {
    for (const [name, a] of Object.entries(this.config.agents)) await this.#addAgent(name, a);
    if (this.config.router) await this.#startRouter(this.config.router);
  }

  async #addAgent(name: string, a: AgentConfig): Promise<void> {
    const spec = agentSpec(name, a, this.config.audit_log);
    const child = new Child(spec, this.config.restart, this.log);
    this.#agents.set(name, {
      child,
      config: a,
      key: JSON.stringify(spec),
      policyHash: await fileHash(a.policy),
    });
    child.start();
  }

  async #startRouter(r: RouterConfig): Promise<void> {
    const spec = routerSpec(r, this.config.state_dir);
    const child = new Child(spec, this.config.restart, this.log);
    this.#router = {
      child,
      config: r,
      key: JSON.stringify(spec),
      policyHash: await fileHash(r.policy),
      backends: await routerBackends(r.policy),
    };
    child.start();
  }

  /**
   * Applies a new configuration: starts new agents, stops removed ones, restarts changed ones.
   * An agent whose entry is unchanged but whose policy file changed gets SIGHUP (its `clawcage run`
   * reloads network_policies and privacy live). The router re-reads its policy's privacy section on SIGHUP.
   */
  async reload(next: ServiceConfig): Promise<ReloadReport> {
    const changes: string[] = [];
    // Everything that can fail (credentials) before anything changes.
    const nextRouterKey = next.router
      ? JSON.stringify(routerSpec(next.router, next.state_dir))
      : null;
    for (const [name, a] of Object.entries(next.agents)) agentSpec(name, a, next.audit_log);
    this.config = next;
    const stops: Promise<void>[] = [];
    for (const [name, entry] of this.#agents) {
      if (!(name in next.agents)) {
        this.#agents.delete(name);
        stops.push(entry.child.stop());
        changes.push(`agent ${name}: removed, stopped`);
      }
    }
    await Promise.all(stops);
    for (const [name, a] of Object.entries(next.agents)) {
      const entry = this.#agents.get(name);
      if (!entry) {
        await this.#addAgent(name, a);
        changes.push(`agent ${name}: added, started`);
        continue;
      }
      entry.child.setBackoff(next.restart);
      if (JSON.stringify(agentSpec(name, a, this.config.audit_log)) !== entry.key) {
        await entry.child.stop();
        this.#agents.delete(name);
        await this.#addAgent(name, a);
        changes.push(`agent ${name}: changed, restarted`);
      } else {
        const hash = await fileHash(a.policy);
        if (hash !== entry.policyHash) {
          entry.policyHash = hash;
          const sent = entry.child.signal("SIGHUP");
          changes.push(`agent ${name}: ${sent ? POLICY_RELOADED : POLICY_NOT_RUNNING}`);
        }
      }
    }
    const r = this.#router;
    if (r && !next.router) {
      this.#router = null;
      await r.child.stop();
      changes.push("router: removed, stopped");
    } else if (next.router) {
      const key = nextRouterKey;
      if (!r) {
        await this.#startRouter(next.router);
        changes.push("router: added, started");
      } else if (key !== r.key) {
        await r.child.stop();
        await this.#startRouter(next.router);
        changes.push("router: changed, restarted");
      } else {
        r.child.setBackoff(next.restart);
        const hash = await fileHash(next.router.policy);
        if (hash !== r.policyHash) {
          // The router re-reads the privacy section on SIGHUP (and keeps the old one if the
          // new one is invalid: it says so in its own log).
          const sent = r.child.signal("SIGHUP");
          r.policyHash = hash;
          r.backends = await routerBackends(next.router.policy);
          changes.push(
            sent
              ? "router: policy changed, privacy section reloaded (SIGHUP)"
              : "router: policy changed; the router is not running, it will read it when it starts",
          );
        }
      }
    }
    const report = { at: new Date().toISOString(), ok: true, changes };
    this.#lastReload = report;
    return report;
  }

  reloadFailed(error: string): ReloadReport {
    const report = { at: new Date().toISOString(), ok: false, changes: [], error };
    this.#lastReload = report;
    return report;
  }

  /** Stops everything: agents and router in parallel, SIGTERM then SIGKILL. */
  async stop(): Promise<void> {
    const all = [...this.#agents.values()].map((e) => e.child.stop());
    if (this.#router) all.push(this.#router.child.stop());
    await Promise.all(all);
  }

  status(): ServiceStatus {
    const now = Date.now();
    return {
      pid: Deno.pid,
      config: this.configPath,
      started: new Date(this.#started).toISOString(),
      uptime_s: Math.floor((now - this.#started) / 1000),
      agents: [...this.#agents.values()].map((e) => ({
        ...e.child.status(),
        policy: e.config.policy,
        command: e.config.command,
      })),
      router: this.#router
        ? {
          ...this.#router.child.status(),
          listen: this.#router.config.listen,
          policy: this.#router.config.policy,
          backends: this.#router.backends,
        }
        : null,
      denials_last_hour: countDenials(this.config.audit_log ?? defaultAuditDir(), now - 3600_000),
      last_reload: this.#lastReload,
    };
  }
}

async function routerBackends(policyPath: string): Promise<RouterBackend[]> {
  try {
    const privacy = (await loadPolicyFile(policyPath)).privacy;
    if (!privacy) return [];
    return Object.entries(privacy.backends).map(([name, b]) => ({
      name,
      type: b.type,
      role: privacy.local === name ? "local" : privacy.cloud === name ? "cloud" : "unused",
      base_url: b.base_url ?? null,
      model: b.model ?? null,
    }));
  } catch {
    return [];
  }
}
