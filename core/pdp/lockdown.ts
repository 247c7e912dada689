// What the policy-decision process may still do once it has its policy and its socket:
// nothing but answer on descriptors it already holds. Applied on the JS main thread:
//   1. no_new_privs, parent-death signal, not dumpable (no ptrace by its own uid, no core);
//   2. Landlock: every filesystem and TCP right handled, none granted; abstract unix sockets
//      and signals scoped to its own domain (ABI 6);
//   3. a seccomp ALLOW-list for every thread (TSYNC); anything else fails with EPERM, and
//      exec, ptrace and the calls that create or aim sockets kill the process.
//
// The allow-list is what Deno 2.9 (V8 + tokio) was seen to call while serving, under
// `strace -f` (see docs/pdp.md for how to redo that after a Deno upgrade).
//
// Landlock restricts the calling thread and threads it starts later; Deno's worker threads that
// already exist are not in the domain (Landlock ABI 7 has no TSYNC). The seccomp allow-list
// covers every thread and has no open/openat at all, so no thread can open a file.

import * as libc from "../../ffi/libc.ts";
import * as landlock from "../../ffi/landlock.ts";
import {
  libraryVersion,
  loadFilter,
  type SeccompFilter,
  type SeccompRule,
} from "../../ffi/seccomp.ts";
import type { LockdownReport } from "./protocol.ts";

const CLONE_THREAD = 0x00010000n;
const PROT_EXEC = 4n;
const PR_SET_NAME = 15n;
const FIONBIO = 0x5421n;
const FIOCLEX = 0x5451n;
const TCGETS = 0x5401n; // isatty() before writing to stderr
const F_GETFL = 3n, F_SETFL = 4n, F_GETFD = 1n, F_SETFD = 2n, F_DUPFD_CLOEXEC = 1030n;

/** Allowed without conditions. */
export const ALLOWED_SYSCALLS: readonly string[] = [
  // descriptors it holds: the socket, accepted connections, the control pipe, epoll, eventfd
  "read",
  "readv",
  "write",
  "writev",
  "close",
  "accept4",
  "recvfrom",
  "sendto",
  "shutdown",
  "getsockopt",
  "getsockname",
  "getpeername",
  "epoll_wait",
  "epoll_pwait",
  "epoll_pwait2",
  "epoll_ctl",
  "fstat",
  // memory (V8 heap, allocator); mmap and mprotect below
  "munmap",
  "mremap",
  "madvise",
  "brk",
  "membarrier",
  // threads (tokio's blocking pool starts and ends threads) and their synchronisation
  "futex",
  "set_robust_list",
  "rseq",
  "sched_yield",
  "sched_getaffinity",
  "sched_getparam",
  "sched_getscheduler",
  "gettid",
  "getpid",
  "sigaltstack",
  "rt_sigaction",
  "rt_sigprocmask",
  "rt_sigreturn",
  // time and randomness
  "clock_gettime",
  "clock_nanosleep",
  "nanosleep",
  "gettimeofday",
  "getrandom",
  // leaving
  "exit",
  "exit_group",
];

/** Calls that mean the process is compromised: the kernel kills it (the supervisor restarts). */
export const KILLING_SYSCALLS: readonly string[] = [
  "execve",
  "execveat",
  "ptrace",
  "process_vm_readv",
  "process_vm_writev",
  "socket",
  "connect",
  "bind",
  "listen",
];

/**
 * True when V8 runs without its JIT (`DENO_V8_FLAGS=--jitless`, set by the client): then no
 * executable memory is ever needed, and WebAssembly (which needs it) is absent.
 */
export function isJitless(): boolean {
  return typeof WebAssembly === "undefined";
}

/** The PDP's filter. `noExecMemory`: refuse mmap/mprotect with PROT_EXEC (needs jitless V8). */
export function pdpFilter(noExecMemory = isJitless()): SeccompFilter {
  const allow = (syscall: string, args?: SeccompRule["args"]): SeccompRule => ({
    syscall,
    action: "allow",
    args,
  });
  const rules: SeccompRule[] = [
    ...ALLOWED_SYSCALLS.map((s) => allow(s)),
    ...KILLING_SYSCALLS.map((syscall): SeccompRule => ({ syscall, action: "kill-process" })),
    // Without a JIT, no new executable memory: injected code has nowhere to run.
    ...["mmap", "mprotect"].map((syscall) =>
      noExecMemory
        ? allow(syscall, [{ arg: 2, op: "MASKED_EQ", mask: PROT_EXEC, value: 0n }])
        : allow(syscall)
    ),
    // new threads only (no new processes); clone3 hides its flags in memory, so it reports
    // ENOSYS and glibc falls back to clone.
    allow("clone", [{ arg: 0, op: "MASKED_EQ", mask: CLONE_THREAD, value: CLONE_THREAD }]),
    { syscall: "clone3", action: { errno: 38 } },
    allow("prctl", [{ arg: 0, op: "EQ", value: PR_SET_NAME }]),
    allow("ioctl", [{ arg: 1, op: "EQ", value: FIONBIO }]),
    allow("ioctl", [{ arg: 1, op: "EQ", value: FIOCLEX }]),
    allow("ioctl", [{ arg: 1, op: "EQ", value: TCGETS }]),
    ...[F_GETFL, F_SETFL, F_GETFD, F_SETFD, F_DUPFD_CLOEXEC].map((cmd) =>
      allow("fcntl", [{ arg: 1, op: "EQ", value: cmd }])
    ),
    // signals only to its own threads
    allow("tgkill", [{ arg: 0, op: "EQ", value: BigInt(libc.getpid()) }]),
  ];
  return { defaultAction: { errno: 1 }, rules, tsync: true };
}

/** Locks the calling process down. Throws (and the PDP refuses to serve) when a layer fails. */
export function lockDown(): LockdownReport {
  // libseccomp is loaded now: once Landlock applies, the library file cannot be opened.
  if (libraryVersion() === null) throw new Error("libseccomp.so.2 not found");
  libc.prctl(libc.PR.SET_PDEATHSIG, 9n);
  libc.prctl(libc.PR.SET_NO_NEW_PRIVS, 1n);
  libc.prctl(libc.PR.SET_DUMPABLE, 0n);
  const landlockAbi = restrictToNothing();
  const noExecMemory = isJitless();
  const { loaded } = loadFilter(pdpFilter(noExecMemory));
  return { landlockAbi, seccompRules: loaded, noExecMemory };
}

/**
 * Landlock step: every filesystem and TCP right handled, none granted; abstract unix sockets
 * and signals scoped. Needs no_new_privs (or CAP_SYS_ADMIN). Returns the ABI (0: no Landlock).
 */
export function restrictToNothing(): number {
  const abi = landlock.abiVersion();
  if (abi === 0) return 0;
  landlock.restrictSelf(
    {
      handledFs: landlock.fsRightsFor(abi),
      handledNet: landlock.netRightsFor(abi),
      scoped: landlock.scopesFor(abi),
      paths: [],
      ports: [],
    },
    abi,
    () => false,
  );
  return abi;
}
