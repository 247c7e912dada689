// The policy's `seccomp` section (a clawcage addition, not in OpenShell): system calls to deny
// to the agent on top of the built-in profile (core/sandbox/seccomp_profile.ts). Static: read
// when the sandbox starts. Each listed call fails with EPERM.

import { z } from "zod";

/** Calls the stage itself needs after the filter is loaded, to start and wait for the agent. */
export const UNDENIABLE_SYSCALLS = [
  "execve",
  "execveat",
  "clone",
  "fork",
  "vfork",
  "wait4",
  "waitid",
  "exit",
  "exit_group",
  "rt_sigreturn",
  "futex",
];

const syscallName = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, {
  message: "a system call name is lower-case letters, digits and _ (e.g. personality)",
}).refine((name) => !UNDENIABLE_SYSCALLS.includes(name), {
  message: "denying this system call would stop the sandbox from starting the agent",
});

export const seccompSection = z.strictObject({
  /** Extra system calls denied with EPERM (names as in syscalls(2)). */
  deny_syscalls: z.array(syscallName).default([]),
});

export type SeccompSection = z.infer<typeof seccompSection>;
