// `clawcage __stage`: runs inside the fresh namespaces (PID 1 there) or, rootless, as the
// supervisor's child. Builds the sandbox on the main thread, then starts the agent from that
// thread so the agent inherits everything: mounts, Landlock, seccomp, no_new_privs, uid.

import * as libc from "../../ffi/libc.ts";
import * as landlock from "../../ffi/landlock.ts";
import { loadFilter, openSeccompLibrary } from "../../ffi/seccomp.ts";
import { agentFilter } from "./seccomp_profile.ts";
import { beneathAny, type StagePlan } from "./plan.ts";
import { signalNumber } from "./signals.ts";
import { StatusWriter } from "./agent_status.ts";
import { listenBridge, serveBridge } from "./bridge.ts";
import { SockDiag } from "../../ffi/sock_diag.ts";
import { trace, traceRole } from "../start_trace.ts";

export const STAGE_PLAN_ENV = "CLAWCAGE_STAGE_PLAN";

/** Exit codes of the stage's own failures (as in docker/podman and POSIX shells). */
export const EXIT = { SETUP_FAILED: 125, CANNOT_EXECUTE: 126, NOT_FOUND: 127 } as const;

class StageError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.SETUP_FAILED) {
    super(message);
  }
}

export async function stageMain(): Promise<number> {
  traceRole("stage");
  trace("modules loaded");
  let plan: StagePlan;
  try {
    plan = JSON.parse(Deno.env.get(STAGE_PLAN_ENV) ?? "");
  } catch {
    console.error("clawcage: __stage is an internal mode started by `clawcage run`");
    return 2;
  }
  Deno.env.delete(STAGE_PLAN_ENV);
  let agentPid: number;
  let status: StatusWriter;
  let bridge:
    | { listeners: Deno.TcpListener[]; proxyPath: string; sockDiag: SockDiag | null }
    | null = null;
  try {
    // Opened (and unlinked) before the mounts and Landlock: the supervisor's channel for the
    // agent's pid and exit status.
    status = new StatusWriter(plan.statusFile);
    if (plan.namespaces) bridge = setupNamespaces(plan);
    else libc.prctl(libc.PR.SET_CHILD_SUBREAPER, 1n);
    trace("namespaces set up");
    const landlockRuleset = prepareLandlock(plan);
    // The library is mapped before Landlock: a policy need not grant /usr/lib to the stage.
    openSeccompLibrary();
    dropPrivileges(plan);
    // Changing credentials clears the parent-death signal that unshare(1) --kill-child (or
    // setpriv, rootless) set for us: set it again, or a SIGKILLed supervisor would leave the
    // sandbox running.
    libc.prctl(libc.PR.SET_PDEATHSIG, 9n);
    libc.prctl(libc.PR.SET_NO_NEW_PRIVS, 1n);
    if (landlockRuleset) {
      landlock.restrictSelf(landlockRuleset.spec, landlockRuleset.abi, isDirectory);
    }
    loadFilter(agentFilter(plan.denySyscalls));
    libc.prctl(libc.PR.SET_DUMPABLE, 0n);
    // Descriptors inherited from whoever started clawcage must not reach the agent.
    libc.cloexecFrom(3);
    trace("landlock, seccomp, uid applied");
    const signals = forwardSignals(plan);
    agentPid = startAgent(plan);
    signals.agentStarted(agentPid);
    trace("agent spawned");
    status.report({ agent: "start", pid: agentPid });
  } catch (e) {
    const code = e instanceof StageError ? e.exitCode : EXIT.SETUP_FAILED;
    const prefix = e instanceof StageError ? "clawcage: " : "clawcage: sandbox setup failed: ";
    console.error(prefix + (e as Error).message);
    return code;
  }
  // The bridge runs on this thread, under the same uid, Landlock domain and seccomp filter as
  // the agent: it only accepts on its loopback listeners and connects to the proxy socket.
  if (bridge) {
    serveBridge(bridge.listeners, { proxyPath: bridge.proxyPath, sockDiag: bridge.sockDiag });
  }
  return await superviseAgent(plan, agentPid, status);
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function setupNamespaces(
  plan: StagePlan,
): { listeners: Deno.TcpListener[]; proxyPath: string; sockDiag: SockDiag | null } | null {
  // unshare(1) made every mount private and mounted a /proc for the new PID namespace.
  // The proxy socket's directory and the CA bundle live in the supervisor's runtime directory,
  // which the tmpfs on /run hides: open them first. The directory descriptor is how the bridge
  // reaches the proxy later (after dropping to the agent's uid, which owns that directory).
  const bridgeDirFd = plan.bridge
    ? libc.open(plan.bridge.socketDir, libc.O.PATH | libc.O.CLOEXEC)
    : null;
  const caBundleFd = plan.caBundle
    ? libc.open(plan.caBundle.source, libc.O.PATH | libc.O.CLOEXEC)
    : null;
  // Granted paths beneath the directories we are about to replace are kept open (O_PATH) and
  // bound back at the same place afterwards.
  const granted = [...plan.readWrite, ...plan.readOnly];
  const kept = granted
    .filter((p) => beneathAny(p, plan.privateDirs) && !plan.privateDirs.includes(p))
    .map((path) => ({
      path,
      dir: isDirectory(path),
      fd: libc.open(path, libc.O.PATH | libc.O.CLOEXEC),
    }));
  const nosuidNodev = libc.MS.NOSUID | libc.MS.NODEV;
  for (const dir of plan.privateDirs) {
    libc.mount("tmpfs", dir, "tmpfs", nosuidNodev, dir === "/run" ? "mode=0755" : "mode=1777");
  }
  // The supervisor's own state (audit log and key): an empty, read-only, mode 000 tmpfs.
  for (const dir of plan.hiddenDirs ?? []) {
    libc.mount("tmpfs", dir, "tmpfs", nosuidNodev | libc.MS.NOEXEC | libc.MS.RDONLY, "mode=000");
  }
  for (const k of kept) {
    if (k.dir) Deno.mkdirSync(k.path, { recursive: true });
    else {
      Deno.mkdirSync(k.path.slice(0, k.path.lastIndexOf("/")) || "/", { recursive: true });
      Deno.writeFileSync(k.path, new Uint8Array());
    }
    libc.mount(`/proc/self/fd/${k.fd}`, k.path, null, libc.MS.BIND | libc.MS.REC);
    libc.close(k.fd);
  }
  if (plan.caBundle && caBundleFd !== null) {
    const target = plan.caBundle.target;
    Deno.mkdirSync(target.slice(0, target.lastIndexOf("/")) || "/", { recursive: true });
    Deno.writeFileSync(target, new Uint8Array(), { mode: 0o444 });
    libc.mount(`/proc/self/fd/${caBundleFd}`, target, null, libc.MS.BIND);
    libc.mount(
      null,
      target,
      null,
      libc.MS.REMOUNT | libc.MS.BIND | libc.MS.RDONLY | libc.MS.NOSUID | libc.MS.NODEV,
    );
    libc.close(caBundleFd);
  }
  if (plan.bridge) {
    // Fail closed if the runtime directory (CA key, proxy socket) were still reachable.
    let visible = true;
    try {
      Deno.statSync(plan.bridge.runtimeDir);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) visible = false;
    }
    if (visible) {
      throw new StageError(
        `the runtime directory ${plan.bridge.runtimeDir} would be visible inside the sandbox`,
      );
    }
  }
  for (const file of plan.maskedFiles) {
    libc.mount("/dev/null", file, null, libc.MS.BIND);
    libc.mount(null, file, null, libc.MS.REMOUNT | libc.MS.BIND | libc.MS.RDONLY);
  }
  // Kernel tunables stay read-only even for an agent that runs as (capability-less) root.
  for (const p of ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"]) {
    try {
      Deno.lstatSync(p);
    } catch {
      continue;
    }
    libc.mount(p, p, null, libc.MS.BIND | libc.MS.REC);
    libc.mount(
      null,
      p,
      null,
      libc.MS.REMOUNT | libc.MS.BIND | libc.MS.RDONLY | libc.MS.NOSUID | libc.MS.NODEV,
    );
  }
  trace("mounts done");
  libc.sethostname(plan.hostname);
  libc.interfaceUp("lo");
  if (!plan.bridge || bridgeDirFd === null) return null;
  // Opened now: the agent's seccomp filter (which the stage shares) forbids creating it later.
  trace("loopback up");
  let sockDiag: SockDiag | null = null;
  try {
    sockDiag = SockDiag.open();
  } catch { /* no inet_diag: the bridge reads /proc/net/tcp instead */ }
  return {
    listeners: listenBridge(plan.bridge.port),
    proxyPath: `/proc/self/fd/${bridgeDirFd}/${plan.bridge.socketName}`,
    sockDiag,
  };
}

function prepareLandlock(plan: StagePlan): { spec: landlock.RulesetSpec; abi: number } | null {
  const abi = landlock.abiVersion();
  if (abi === 0) {
    if (plan.landlockRequired) {
      throw new StageError(
        "Landlock is not available on this kernel and the policy requires it (landlock.compatibility: hard_requirement)",
      );
    }
    return null;
  }
  const fs = landlock.fsRightsFor(abi);
  const readOnly = landlock.FS.READ_FILE | landlock.FS.READ_DIR | landlock.FS.EXECUTE;
  const spec: landlock.RulesetSpec = {
    handledFs: fs,
    // With a network namespace the agent's TCP stays inside it; without one, Landlock limits
    // TCP to the listed ports (the egress proxy's, when there is one) and forbids binding.
    handledNet: plan.namespaces ? 0n : landlock.netRightsFor(abi),
    scoped: landlock.scopesFor(abi),
    paths: [
      ...plan.readOnly.map((path) => ({ path, access: readOnly })),
      ...(plan.pdeathsigHelper ? [{ path: plan.pdeathsigHelper, access: readOnly }] : []),
      ...(plan.caBundle ? [{ path: plan.caBundle.target, access: landlock.FS.READ_FILE }] : []),
      ...plan.readWrite.map((path) => ({ path, access: fs })),
    ],
    ports: plan.connectPorts.map((port) => ({ port, access: landlock.NET.CONNECT_TCP })),
  };
  return { spec, abi };
}

function dropPrivileges(plan: StagePlan): void {
  if (libc.geteuid() !== 0) return;
  const lastCap = Number(Deno.readTextFileSync("/proc/sys/kernel/cap_last_cap").trim());
  for (let cap = 0; cap <= lastCap; cap++) libc.prctl(libc.PR.CAPBSET_DROP, BigInt(cap));
  libc.setgroups(plan.user.groups);
  libc.setresgid(plan.user.gid, plan.user.gid, plan.user.gid);
  libc.setresuid(plan.user.uid, plan.user.uid, plan.user.uid);
  libc.prctl(libc.PR.CAP_AMBIENT, BigInt(libc.PR.CAP_AMBIENT_CLEAR_ALL));
  libc.clearCapabilities();
}

/** Finds the program the way execvp would, but as the sandboxed agent sees the filesystem. */
function resolveCommand(name: string, path: string): string {
  const candidates = name.includes("/")
    ? [name]
    : path.split(":").filter(Boolean).map((d) => `${d}/${name}`);
  let denied: string | null = null;
  for (const c of candidates) {
    try {
      const info = Deno.statSync(c);
      if (info.isFile) return c;
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied) denied ??= c;
    }
  }
  if (denied) {
    throw new StageError(
      `permission denied: ${denied} (not granted by the policy)`,
      EXIT.CANNOT_EXECUTE,
    );
  }
  throw new StageError(`command not found: ${name}`, EXIT.NOT_FOUND);
}

function startAgent(plan: StagePlan): number {
  const program = resolveCommand(plan.argv[0], plan.env.PATH ?? "");
  // Without a PID namespace nothing kills the agent if the stage is killed: setpriv(1) sets
  // the agent's parent-death signal before it executes the agent.
  const argv = plan.pdeathsigHelper
    ? [plan.pdeathsigHelper, "--pdeathsig", "KILL", "--", program, ...plan.argv.slice(1)]
    : [program, ...plan.argv.slice(1)];
  try {
    return libc.spawn({ argv, env: plan.env, cwd: plan.cwd });
  } catch (e) {
    if (
      e instanceof libc.OsError && (e.errno === libc.errno.EACCES || e.errno === libc.errno.EPERM)
    ) {
      throw new StageError(
        `permission denied: ${program} (not granted by the policy)`,
        EXIT.CANNOT_EXECUTE,
      );
    }
    if (e instanceof libc.OsError && e.errno === libc.errno.ENOENT) {
      throw new StageError(`cannot execute ${program}: ${e.message}`, EXIT.NOT_FOUND);
    }
    throw e;
  }
}

/**
 * Forwards signals to the agent. Installed before the agent starts: as PID 1 of its namespace the
 * stage would otherwise drop a SIGTERM that arrives between the agent's start and this point (the
 * kernel discards signals to a namespace's init that has no handler). Signals that come before
 * the agent exists are delivered once it does.
 */
function forwardSignals(plan: StagePlan): { agentStarted(pid: number): void } {
  const forwarded: Deno.Signal[] = ["SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"];
  const interrupts: Deno.Signal[] = ["SIGINT", "SIGQUIT"];
  let agentPid: number | null = null;
  const early: number[] = [];
  const send = (signo: number) => {
    try {
      libc.kill(agentPid!, signo);
    } catch { /* the agent is already gone */ }
  };
  for (const sig of [...forwarded, ...interrupts]) {
    const forward = forwarded.includes(sig) || plan.forwardInterrupts;
    // A listener is installed either way: it keeps the stage alive when the terminal sends
    // SIGINT to the whole foreground process group (the agent gets it directly).
    Deno.addSignalListener(sig, () => {
      if (!forward) return;
      if (agentPid === null) early.push(signalNumber(sig));
      else send(signalNumber(sig));
    });
  }
  return {
    agentStarted(pid: number) {
      agentPid = pid;
      for (const signo of early.splice(0)) send(signo);
    },
  };
}

async function superviseAgent(
  plan: StagePlan,
  agentPid: number,
  status: StatusWriter,
): Promise<number> {
  // As PID 1 of the namespace the stage reaps every orphan; rootless it is a child subreaper.
  for (;;) {
    const r = await libc.waitpid(-1);
    if (r === null) return EXIT.SETUP_FAILED;
    if (r.pid !== agentPid) continue;
    trace("agent exited");
    status.report({ agent: "exit", pid: r.pid, code: r.code, signal: r.signal });
    const code = r.code ?? 128 + (r.signal ?? 0);
    // With a PID namespace the kernel kills whatever is left when PID 1 exits. Rootless, the
    // stage kills the agent's leftover descendants (reparented to it) itself.
    if (!plan.namespaces) await killLeftovers();
    return code;
  }
}

async function killLeftovers(): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const children = listChildren();
    if (children.length === 0) return;
    for (const pid of children) {
      try {
        libc.kill(pid, 9);
      } catch { /* already gone */ }
    }
    for (const _ of children) await libc.waitpid(-1);
  }
}

function listChildren(): number[] {
  const pids: number[] = [];
  try {
    for (const task of Deno.readDirSync("/proc/self/task")) {
      try {
        const text = Deno.readTextFileSync(`/proc/self/task/${task.name}/children`);
        pids.push(...text.split(/\s+/).filter(Boolean).map(Number));
      } catch { /* task ended */ }
    }
  } catch { /* /proc not granted: nothing to enumerate */ }
  return pids;
}
