// The supervisor side of `clawcage run`: checks the host, starts the stage in fresh
// namespaces (through util-linux unshare(1), a single-threaded helper that can enter a new
// PID namespace and fork), forwards signals and passes the agent's exit status through.

import * as libc from "../../ffi/libc.ts";
import { abiVersion } from "../../ffi/landlock.ts";
import { libraryVersion, resolveSyscall } from "../../ffi/seccomp.ts";
import { selfCommand, selfEnv, systemProgram } from "../self.ts";
import { type HostView, type StagePlan, withEgress } from "./plan.ts";
import { type EgressOptions, startEgress } from "./egress.ts";
import { agentFilter } from "./seccomp_profile.ts";
import { signalNumber } from "./signals.ts";
import { STAGE_PLAN_ENV } from "./stage.ts";
import { type SandboxHooks, watchSandbox } from "./watch.ts";
import { trace } from "../start_trace.ts";

export class HostError extends Error {}

export function hostView(): HostView {
  const uid = libc.geteuid();
  const read = (p: string) => {
    try {
      return Deno.readTextFileSync(p);
    } catch {
      return "";
    }
  };
  const passwd = read("/etc/passwd");
  const userName =
    passwd.split("\n").map((l) => l.split(":")).find((r) => Number(r[2]) === uid)?.[0] ??
      String(uid);
  return {
    isRoot: uid === 0,
    uid,
    gid: libc.getgid(),
    userName,
    passwd,
    group: read("/etc/group"),
    env: Deno.env.toObject(),
    kind(path) {
      try {
        const info = Deno.statSync(path);
        return info.isDirectory ? "dir" : info.isFile ? "file" : "other";
      } catch {
        return null;
      }
    },
    stdinIsTerminal: Deno.stdin.isTerminal(),
    which: systemProgram,
  };
}

/** One line naming the layers that will be active, e.g. for `clawcage run`'s banner. */
export function describeLayers(plan: StagePlan): string {
  const abi = abiVersion();
  const parts = [
    plan.namespaces ? "namespaces(mount,pid,net,ipc,uts,cgroup)" : "namespaces(off: rootless)",
    abi > 0
      ? `landlock(abi ${abi}${abi >= 4 ? ",tcp" : ""}${abi >= 6 ? ",scopes" : ""})`
      : "landlock(MISSING)",
    `seccomp(${agentFilter(plan.denySyscalls).rules.length} rules)`,
    `user ${plan.user.name}(${plan.user.uid}:${plan.user.gid})`,
    plan.bridge
      ? `network(egress proxy via 127.0.0.1:${plan.bridge.port})`
      : plan.connectPorts.length > 0
      ? `network(egress proxy, tcp connect to port ${plan.connectPorts.join(",")} only)`
      : plan.namespaces
      ? "network(loopback only)"
      : "network(none)",
  ];
  return `clawcage: sandbox: ${parts.join(" ")}`;
}

/** Fails with one clear line when the host cannot build the sandbox the plan asks for. */
export function preflight(plan: StagePlan): void {
  if (libraryVersion() === null) {
    throw new HostError(
      "libseccomp.so.2 not found; install it (Debian/Ubuntu: apt-get install libseccomp2)",
    );
  }
  for (const name of plan.denySyscalls ?? []) {
    if (resolveSyscall(name) === null) {
      throw new HostError(
        `seccomp.deny_syscalls: ${name} is not a system call on this architecture (${Deno.build.arch})`,
      );
    }
  }
  if (plan.landlockRequired && abiVersion() === 0) {
    throw new HostError(
      "Landlock is not available on this kernel and the policy requires it (landlock.compatibility: hard_requirement)",
    );
  }
  if (plan.namespaces && !systemProgram("unshare")) {
    throw new HostError("unshare(1) from util-linux not found; install util-linux");
  }
  if (!systemProgram("setpriv")) {
    throw new HostError("setpriv(1) from util-linux not found; install util-linux");
  }
}

/**
 * Starts the egress proxy for this sandbox, runs the sandbox with its traffic routed through
 * it, then stops the proxy and removes the runtime directory. `onStart` sees the final plan.
 */
export async function runSandboxWithEgress(
  plan: StagePlan,
  egress: EgressOptions,
  onStart?: (plan: StagePlan) => void,
  hooks: SandboxHooks = {},
): Promise<number> {
  const running = await startEgress(plan, egress);
  try {
    const routed = withEgress(plan, running.endpoint);
    onStart?.(routed);
    return await runSandbox(routed, hooks);
  } finally {
    await running.close();
  }
}

/**
 * Starts the stage and waits for the agent. Returns the agent's exit code (128+N for signal N).
 * `hooks` hear of the stage and the agent (audit) and can stop the sandbox at once (fail closed).
 */
export async function runSandbox(plan: StagePlan, hooks: SandboxHooks = {}): Promise<number> {
  const setpriv = systemProgram("setpriv")!;
  // setpriv sets PR_SET_PDEATHSIG before executing the next program: if the supervisor dies,
  // the kernel kills unshare, whose --kill-child kills the stage (PID 1), which takes the
  // whole PID namespace with it.
  const prefix = [setpriv, "--pdeathsig", "KILL", "--"];
  const namespaces = plan.namespaces
    ? [
      systemProgram("unshare")!,
      "--mount",
      "--uts",
      "--ipc",
      "--net",
      "--pid",
      "--cgroup",
      "--fork",
      "--kill-child",
      "--propagation",
      "private",
      "--mount-proc",
      "--",
    ]
    : [];
  const argv = [...prefix, ...namespaces, ...selfCommand(["__stage"])];
  // Descriptors our caller leaked to us (opened without O_CLOEXEC) stop here.
  libc.cloexecFrom(3);
  const watch = watchSandbox(plan, hooks);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    clearEnv: true,
    env: { ...selfEnv(), [STAGE_PLAN_ENV]: JSON.stringify({ ...plan, ...watch.planFields }) },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  watch.started(child.pid);
  trace("stage spawned");

  const stagePid = () => {
    if (!plan.namespaces) return child.pid;
    try {
      const kids = Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`).trim();
      return kids ? Number(kids.split(/\s+/)[0]) : null;
    } catch {
      return null;
    }
  };
  let terminatedEarly = false;
  const listeners: [Deno.Signal, () => void][] = [];
  for (
    const sig of ["SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGQUIT"] as Deno.Signal[]
  ) {
    const fromTerminal = (sig === "SIGINT" || sig === "SIGQUIT") && !plan.forwardInterrupts;
    const handler = () => {
      if (sig === "SIGHUP" && hooks.onHangup) return hooks.onHangup();
      // The terminal delivers SIGINT/SIGQUIT to the agent itself (same process group).
      if (fromTerminal) return;
      const signo = signalNumber(sig);
      const pid = stagePid();
      if (pid !== null && (!plan.namespaces || catchesSignal(pid, signo))) {
        try {
          libc.kill(pid, signo);
        } catch { /* already gone */ }
      } else if (sig === "SIGTERM") {
        // The stage is PID 1 of its namespace and has no handler yet (still starting): the
        // kernel would drop the signal. SIGKILL from this (the parent) namespace does reach it
        // and ends the namespace; unshare(1), which ignores SIGTERM while it waits, is killed
        // too (a stage it has not forked yet then never runs: --kill-child). Relying on
        // unshare's death alone would not do: the stage clears its parent-death signal while it
        // changes uid. A SIGTERM during start-up is never lost; the run exits 143.
        terminatedEarly = true;
        for (const target of [pid, child.pid]) {
          if (target === null) continue;
          try {
            libc.kill(target, signalNumber("SIGKILL"));
          } catch { /* already gone */ }
        }
      }
    };
    Deno.addSignalListener(sig, handler);
    listeners.push([sig, handler]);
  }
  const status = await child.status;
  trace("stage exited");
  watch.finished();
  for (const [sig, handler] of listeners) Deno.removeSignalListener(sig, handler);
  if (terminatedEarly) return 128 + signalNumber("SIGTERM");
  if (status.signal !== null) return 128 + signalNumber(status.signal);
  return status.code;
}

/** Whether `pid` has a handler for `signo` (SigCgt in /proc/PID/status). */
function catchesSignal(pid: number, signo: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m !== null && ((BigInt(`0x${m[1]}`) >> BigInt(signo - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}
