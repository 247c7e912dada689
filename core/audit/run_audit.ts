// The audit trail of one `clawcage run`: refuses to start the agent when the log cannot be
// written, records the policy load, the sandbox and agent start and exit, kernel Landlock
// denials, and the supervisor's shutdown, and stops the sandbox at once when the log fails.
// Other parts of the supervisor (egress proxy, router) record through `recorder`.

import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { isDescendant } from "../sandbox/agent_status.ts";
import { beneathAny, type StagePlan } from "../sandbox/plan.ts";
import { signalName } from "../sandbox/signals.ts";
import type { SandboxHooks } from "../sandbox/watch.ts";
import { AuditSession, NoRecorder, type Recorder } from "./session.ts";
import type { AuditSettings } from "./settings.ts";
import { AuditFailedError, AuditLockedError, AuditOpenError } from "./writer.ts";
import { trace } from "../start_trace.ts";

/** How many runs may write below the default log directory at once (it and `_run-2` ...). */
export const MAX_CONCURRENT_DEFAULT_LOGS = 16;

/** Exit status of `clawcage run` when the audit trail failed (as for other setup failures). */
export const AUDIT_FAILED_EXIT = 125;

/** The agent must not start: the message says why (one line). */
export class AuditSetupError extends Error {}

export interface RunInfo {
  policyPath: string;
  policySha256: string;
  plan: StagePlan;
  /** The layers in force, as `describeLayers` names them. */
  layers: string[];
  /** Print notes (audit directory, what is not recorded) on stderr. */
  verbose: boolean;
}

function within(path: string, dir: string): boolean {
  return dir === "/" || path === dir || path.startsWith(dir + "/");
}

/** `path` with symlinks resolved as far as it exists (the rest appended as written). */
function canonical(path: string): string {
  const rest: string[] = [];
  let p = resolve(path);
  for (;;) {
    try {
      return join(Deno.realPathSync(p), ...rest.reverse());
    } catch {
      const up = dirname(p);
      if (up === p) return resolve(path);
      rest.push(basename(p));
      p = up;
    }
  }
}

/**
 * Keeps the log and key directories out of the sandbox: a policy that grants a path inside
 * them is refused; with namespaces, both are covered by an empty read-only tmpfs inside the
 * sandbox (so not even their metadata shows); rootless, where nothing can be hidden beneath a
 * granted directory, a grant that contains them is refused.
 */
export function protectAuditDirs(plan: StagePlan, settings: AuditSettings): void {
  // Compared with symlinks resolved: Landlock and bind mounts follow them.
  const dirs: [string, string][] = [[settings.dir, "log"], [settings.keyDir, "key"]];
  const granted = [...plan.readWrite, ...plan.readOnly];
  for (const [given, kind] of dirs) {
    const dir = canonical(given);
    for (const grant of granted) {
      const g = canonical(grant);
      if (within(g, dir)) {
        throw new AuditSetupError(
          `the sandbox would be granted ${g}, inside the audit ${kind} directory ${dir}; ` +
            `refusing (choose another audit directory or grant)`,
        );
      }
      if (within(dir, g) && !plan.namespaces) {
        throw new AuditSetupError(
          `the audit ${kind} directory ${dir} is inside ${g}, which the sandbox may ${
            plan.readWrite.includes(grant) ? "write" : "read"
          }, and rootless mode cannot hide it; refusing (use --audit-dir DIR / audit.key_dir ` +
            `outside every granted path, or run as root)`,
        );
      }
    }
  }
  if (plan.namespaces) {
    plan.hiddenDirs = dirs.map(([d]) => canonical(d)).filter((d) =>
      !beneathAny(d, plan.privateDirs)
    );
  }
}

export class RunAudit {
  readonly recorder: Recorder;
  readonly hooks: SandboxHooks;
  readonly #session: AuditSession | null;
  #failure: string | null = null;

  private constructor(
    recorder: Recorder,
    session: AuditSession | null,
    hooks: SandboxHooks,
  ) {
    this.recorder = recorder;
    this.#session = session;
    this.hooks = hooks;
  }

  /** Opens the trail and records the start; throws AuditSetupError when the agent must not run. */
  static async open(settings: AuditSettings, info: RunInfo): Promise<RunAudit> {
    const sandbox = `sb-${Buffer.from(randomBytes(6)).toString("hex")}`;
    if (!settings.enabled) return new RunAudit(new NoRecorder(sandbox), null, {});

    let stopNow: (reason: string) => void = () => {};
    const stop = new Promise<string>((r) => (stopNow = r));
    let self: RunAudit | null = null;
    let session: AuditSession;
    let dir = settings.dir;
    try {
      for (let slot = 1;; slot++) {
        // The default log has one writer at a time; runs alongside it each take the first free
        // log of their own below it (`_run-2`, ...: no service agent name starts with "_"),
        // which the readers take together with it. Each keeps its own chain across runs.
        dir = slot === 1 ? settings.dir : join(settings.dir, `_run-${slot}`);
        try {
          session = await AuditSession.open({ ...settings, dir }, {
            sandbox,
            onFailure: (reason) => {
              if (self) self.#failure ??= reason;
              stopNow(reason);
            },
          });
          break;
        } catch (e) {
          const next = e instanceof AuditLockedError && settings.defaultDir &&
            slot < MAX_CONCURRENT_DEFAULT_LOGS;
          if (!next) throw e;
        }
      }
    } catch (e) {
      if (!(e instanceof AuditOpenError)) throw e;
      throw new AuditSetupError(
        `${e.message}; refusing to start the agent without an audit trail ` +
          (e instanceof AuditLockedError
            ? `(one writer per log: to run several agents at once, give each clawcage run its ` +
              `own --audit-dir DIR, or run them under clawcage service, which gives each agent ` +
              `its own log; --no-audit to run without one)`
            : `(--audit-dir DIR to write it elsewhere, --no-audit to run without one)`),
      );
    }

    let stagePid: number | null = null;
    const argv = info.plan.argv;
    const hooks: SandboxHooks = {
      onSpawn: (pid) => session.adoptSandbox(pid, info.plan.namespaces),
      onStage: (pid) => {
        stagePid = pid;
      },
      onAgentStart: (a) => {
        session.record({
          class: "process",
          activity: "launch",
          process: {
            role: "agent",
            ...(a.pid !== undefined ? { pid: a.pid } : {}),
            ...(a.pid !== a.nsPid ? { ns_pid: a.nsPid } : {}),
            argv,
            uid: info.plan.user.uid,
          },
        });
      },
      onAgentExit: (a) => {
        session.record({
          class: "process",
          activity: "terminate",
          process: {
            role: "agent",
            ...(a.pid !== undefined ? { pid: a.pid } : {}),
            ...(a.pid !== a.nsPid ? { ns_pid: a.nsPid } : {}),
            ...(a.code !== null ? { exit_code: a.code } : {}),
            ...(a.signal !== null ? { signal: signalName(a.signal) } : {}),
          },
        });
      },
      stop,
    };
    trace("audit: log open");
    const audit = new RunAudit(session, session, hooks);
    self = audit;
    try {
      session.record({
        class: "config",
        activity: "load",
        config: { name: info.policyPath, sha256: info.policySha256 },
      });
      // The stage creates the sandbox's Landlock domain; agents may nest their own below it.
      const denials = await session.startKernelDenials(
        settings.kernelDenials,
        (pid) => stagePid !== null && isDescendant(pid, stagePid),
      );
      trace("audit: kernel denial reader started");
      const execs = settings.execEvents ? session.startExecEvents() : null;
      trace("audit: exec events started");
      session.record({
        class: "process",
        activity: "launch",
        process: { role: "sandbox", argv, uid: info.plan.user.uid },
        sandbox_info: {
          layers: info.layers,
          user: `${info.plan.user.name}(${info.plan.user.uid}:${info.plan.user.gid})`,
          workdir: info.plan.cwd,
        },
      });
      // Nothing runs before the trail shows that it will.
      await session.flush();
      if (info.verbose) {
        console.error(`clawcage: audit: ${dir} (sandbox ${sandbox})`);
        if (denials) console.error(`clawcage: audit: note: ${denials}`);
        if (execs) console.error(`clawcage: audit: note: ${execs}`);
      }
    } catch (e) {
      const why = e instanceof AuditFailedError ? e.message : (e as Error).message;
      try {
        await session.close(0);
      } catch { /* already failed */ }
      throw new AuditSetupError(`${why}; refusing to start the agent`);
    }
    return audit;
  }

  /** Why the trail failed during the run (the sandbox was stopped), or null. */
  get failure(): string | null {
    return this.#failure;
  }

  /**
   * Records the sandbox's end and the supervisor's shutdown and closes the trail. Returns the
   * exit status for `clawcage run`: `code`, or AUDIT_FAILED_EXIT (and says why on stderr) when
   * the trail failed at any point.
   */
  async finish(code: number): Promise<number> {
    const session = this.#session;
    if (!session) return code;
    // The agent's last execs and denials reach the log before its exit does.
    await session.stopExecEvents();
    trace("audit: exec events stopped");
    await session.stopKernelDenials();
    trace("audit: kernel denial reader stopped");
    const duringRun = this.#failure !== null;
    if (!duringRun) {
      session.record({
        class: "process",
        activity: "terminate",
        process: { role: "sandbox", exit_code: code },
      });
      session.record({
        class: "process",
        activity: "terminate",
        process: { role: "supervisor", pid: Deno.pid, exit_code: code },
        reason: "sandbox ended",
      });
    }
    try {
      await session.close();
    } catch (e) {
      this.#failure ??= (e as Error).message;
    }
    if (this.#failure) {
      console.error(
        duringRun
          ? `clawcage: audit trail failed; the sandbox was stopped (fail closed): ${this.#failure}`
          : `clawcage: audit trail failed at shutdown: ${this.#failure}`,
      );
      return AUDIT_FAILED_EXIT;
    }
    return code;
  }
}
