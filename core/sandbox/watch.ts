// What the supervisor's hooks (the audit trail) hear about a running sandbox: the stage's host
// pid (it creates the Landlock domain), the agent's start and exit as the stage reports them,
// and a way to kill the whole sandbox at once when recording fails (fail closed).

import { childrenOf, hostPidOf, killTree, StatusReader } from "./agent_status.ts";
import type { StagePlan } from "./plan.ts";

export interface AgentExit {
  /** Host pid, when it could be found while the agent ran. */
  pid?: number;
  /** Pid inside the sandbox's PID namespace (the same as pid without namespaces). */
  nsPid: number;
  code: number | null;
  signal: number | null;
}

export interface SandboxHooks {
  /** The supervisor's child (setpriv, then unshare or the stage) was just spawned. */
  onSpawn?(pid: number): void;
  /** The stage process exists (its host pid): it creates the sandbox's Landlock domain. */
  onStage?(pid: number): void;
  onAgentStart?(agent: { pid?: number; nsPid: number }): void;
  onAgentExit?(agent: AgentExit): void;
  /** When this resolves, the supervisor kills the sandbox (every process in it) at once. */
  stop?: Promise<unknown>;
  /** SIGHUP to the supervisor calls this (the policy reload) instead of reaching the agent. */
  onHangup?(): void;
}

export interface SandboxWatch {
  /** Fields the stage needs (where to report). */
  planFields: Partial<StagePlan>;
  started(childPid: number): void;
  finished(): void;
}

const POLL_MS = 10;

export function watchSandbox(plan: StagePlan, hooks: SandboxHooks): SandboxWatch {
  if (
    !hooks.onSpawn && !hooks.onStage && !hooks.onAgentStart && !hooks.onAgentExit && !hooks.stop
  ) {
    return { planFields: {}, started() {}, finished() {} };
  }
  const reader = new StatusReader();
  let child = 0;
  let stage: number | null = null;
  let done = false;
  let timer: ReturnType<typeof setInterval> | null = null;
  const hostPids = new Map<number, number>();

  const findStage = () => {
    if (stage !== null || child === 0) return;
    stage = plan.namespaces ? childrenOf(child)[0] ?? null : child;
    if (stage !== null) hooks.onStage?.(stage);
  };
  const poll = () => {
    findStage();
    for (const r of reader.read()) {
      if (r.agent === "start") {
        const pid = plan.namespaces ? (stage !== null ? hostPidOf(stage, r.pid) : null) : r.pid;
        if (pid !== null) hostPids.set(r.pid, pid);
        hooks.onAgentStart?.({ ...(pid !== null ? { pid } : {}), nsPid: r.pid });
        if (timer !== null) clearInterval(timer);
        timer = null;
      } else {
        const pid = hostPids.get(r.pid);
        hooks.onAgentExit?.({
          ...(pid !== undefined ? { pid } : {}),
          nsPid: r.pid,
          code: r.code,
          signal: r.signal,
        });
      }
    }
  };

  return {
    planFields: { statusFile: reader.path },
    started(pid) {
      child = pid;
      hooks.onSpawn?.(pid);
      timer = setInterval(poll, POLL_MS);
      poll();
      hooks.stop?.then(() => {
        if (!done) killTree(child);
      });
    },
    finished() {
      done = true;
      if (timer !== null) clearInterval(timer);
      timer = null;
      poll();
      reader.close();
    },
  };
}
