// The agent's seccomp filter: allow by default, deny a fixed list of system calls that no
// agent needs and that widen the kernel's attack surface or escape the sandbox. Denials
// return EPERM (so agents see a clear error) rather than killing the process.

import type { SeccompFilter, SeccompRule } from "../../ffi/seccomp.ts";

const EPERM = { errno: 1 };
const ENOSYS = { errno: 38 };

/** Whole system calls denied with EPERM. Names missing on an architecture are skipped. */
export const DENIED_SYSCALLS: readonly string[] = [
  // filesystems and mounts
  "mount",
  "umount2",
  "pivot_root",
  "chroot",
  "move_mount",
  "open_tree",
  "fsopen",
  "fsconfig",
  "fsmount",
  "fspick",
  "mount_setattr",
  "open_by_handle_at",
  "name_to_handle_at",
  "quotactl",
  "quotactl_fd",
  // kernel modules, kexec, reboot, swap, accounting
  "init_module",
  "finit_module",
  "delete_module",
  "kexec_load",
  "kexec_file_load",
  "reboot",
  "swapon",
  "swapoff",
  "acct",
  // kernel attack surface
  "bpf",
  "perf_event_open",
  "userfaultfd",
  "io_uring_setup",
  "io_uring_enter",
  "io_uring_register",
  "lookup_dcookie",
  "vhangup",
  "iopl",
  "ioperm",
  // other processes' memory and descriptors
  "ptrace",
  "process_vm_readv",
  "process_vm_writev",
  "process_madvise",
  "pidfd_getfd",
  "kcmp",
  // kernel keyrings
  "keyctl",
  "add_key",
  "request_key",
  // namespaces
  "setns",
  "unshare",
  // clock and kernel log
  "settimeofday",
  "clock_settime",
  "clock_adjtime",
  "adjtimex",
  "syslog",
];

const CLONE_NEWTIME = 0x80n;
const CLONE_NEWNS = 0x00020000n;
const CLONE_NEWCGROUP = 0x02000000n;
const CLONE_NEWUTS = 0x04000000n;
const CLONE_NEWIPC = 0x08000000n;
const CLONE_NEWUSER = 0x10000000n;
const CLONE_NEWPID = 0x20000000n;
const CLONE_NEWNET = 0x40000000n;
export const CLONE_NAMESPACE_FLAGS = [
  CLONE_NEWTIME,
  CLONE_NEWNS,
  CLONE_NEWCGROUP,
  CLONE_NEWUTS,
  CLONE_NEWIPC,
  CLONE_NEWUSER,
  CLONE_NEWPID,
  CLONE_NEWNET,
];

export const AF = {
  UNIX: 1,
  INET: 2,
  INET6: 10,
  NETLINK: 16,
  PACKET: 17,
  BLUETOOTH: 31,
  VSOCK: 40,
} as const;
/** Socket families an agent may create. Everything else (AF_PACKET, AF_BLUETOOTH, ...) is denied. */
export const ALLOWED_FAMILIES: readonly number[] = [AF.UNIX, AF.INET, AF.INET6, AF.NETLINK];
/** One past the highest family number Linux knows (AF_MAX); families from here up are denied too. */
const AF_MAX = 46;
const SOCK_TYPE_MASK = 0xfn;
const SOCK_DGRAM = 2n;
const SOCK_RAW = 3n;
const NETLINK_ROUTE = 0n;
const IPPROTO_MPTCP = 262n;
const TIOCSTI = 0x5412n;
const TIOCLINUX = 0x541cn;

/**
 * The filter the stage loads before starting the agent. `extraDenied`: the policy's
 * seccomp.deny_syscalls, denied with EPERM like the built-in list.
 */
export function agentFilter(extraDenied: readonly string[] = []): SeccompFilter {
  const rules: SeccompRule[] = [...DENIED_SYSCALLS, ...extraDenied]
    .filter((syscall, i, all) => all.indexOf(syscall) === i)
    .map((syscall) => ({ syscall, action: EPERM }));

  // clone3 passes its flags in a struct seccomp cannot read: answer ENOSYS so libc falls back
  // to clone(2), whose flags register we can check.
  rules.push({ syscall: "clone3", action: ENOSYS });
  for (const flag of CLONE_NAMESPACE_FLAGS) {
    rules.push({
      syscall: "clone",
      action: EPERM,
      args: [{ arg: 0, op: "MASKED_EQ", mask: flag, value: flag }],
    });
  }

  // socket(): only the allowed families; within them no raw sockets, no UDP (DNS and QUIC go
  // through the proxy), no MPTCP, and netlink only for NETLINK_ROUTE (interface queries,
  // which iproute2 and getifaddrs(3) open as SOCK_RAW).
  for (let family = 0; family < AF_MAX; family++) {
    if (ALLOWED_FAMILIES.includes(family)) continue;
    rules.push({
      syscall: "socket",
      action: EPERM,
      args: [{ arg: 0, op: "EQ", value: BigInt(family) }],
    });
  }
  rules.push({
    syscall: "socket",
    action: EPERM,
    args: [{ arg: 0, op: "GE", value: BigInt(AF_MAX) }],
  });
  for (const family of [AF.INET, AF.INET6]) {
    rules.push({
      syscall: "socket",
      action: EPERM,
      args: [
        { arg: 0, op: "EQ", value: BigInt(family) },
        { arg: 1, op: "MASKED_EQ", mask: SOCK_TYPE_MASK, value: SOCK_RAW },
      ],
    });
    rules.push({
      syscall: "socket",
      action: EPERM,
      args: [
        { arg: 0, op: "EQ", value: BigInt(family) },
        { arg: 1, op: "MASKED_EQ", mask: SOCK_TYPE_MASK, value: SOCK_DGRAM },
      ],
    });
    rules.push({
      syscall: "socket",
      action: EPERM,
      args: [
        { arg: 0, op: "EQ", value: BigInt(family) },
        { arg: 2, op: "EQ", value: IPPROTO_MPTCP },
      ],
    });
  }
  rules.push({
    syscall: "socket",
    action: EPERM,
    args: [
      { arg: 0, op: "EQ", value: BigInt(AF.NETLINK) },
      { arg: 2, op: "NE", value: NETLINK_ROUTE },
    ],
  });
  // socketpair() can only make AF_UNIX pairs on Linux, which are harmless.

  // Terminal injection into the parent shell. The request number is an unsigned int: compare
  // the low 32 bits so high garbage bits cannot slip past.
  for (const request of [TIOCSTI, TIOCLINUX]) {
    rules.push({
      syscall: "ioctl",
      action: EPERM,
      args: [{ arg: 1, op: "MASKED_EQ", mask: 0xffffffffn, value: request }],
    });
  }

  return { defaultAction: "allow", rules, tsync: true };
}
