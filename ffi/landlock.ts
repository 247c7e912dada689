// Landlock through raw syscalls (the syscall numbers are the same on x86_64 and aarch64).
// See landlock(7). This module knows the ABI; callers say which paths and ports to allow.

import { close, lastErrno, O, open, OsError, rawSyscall } from "./libc.ts";

const SYS_landlock_create_ruleset = 444;
const SYS_landlock_add_rule = 445;
const SYS_landlock_restrict_self = 446;

const CREATE_RULESET_VERSION = 1n;
const RULE_PATH_BENEATH = 1n;
const RULE_NET_PORT = 2n;

/** Filesystem access rights, each with the first ABI that has it. */
export const FS = {
  EXECUTE: 1n << 0n,
  WRITE_FILE: 1n << 1n,
  READ_FILE: 1n << 2n,
  READ_DIR: 1n << 3n,
  REMOVE_DIR: 1n << 4n,
  REMOVE_FILE: 1n << 5n,
  MAKE_CHAR: 1n << 6n,
  MAKE_DIR: 1n << 7n,
  MAKE_REG: 1n << 8n,
  MAKE_SOCK: 1n << 9n,
  MAKE_FIFO: 1n << 10n,
  MAKE_BLOCK: 1n << 11n,
  MAKE_SYM: 1n << 12n,
  REFER: 1n << 13n, // ABI 2
  TRUNCATE: 1n << 14n, // ABI 3
  IOCTL_DEV: 1n << 15n, // ABI 5
} as const;

export const NET = { BIND_TCP: 1n, CONNECT_TCP: 2n } as const; // ABI 4
export const SCOPE = { ABSTRACT_UNIX_SOCKET: 1n, SIGNAL: 2n } as const; // ABI 6
/** ABI 7: log denials of the programs this domain executes (the agent), not only the caller. */
const RESTRICT_SELF_LOG_NEW_EXEC_ON = 2n;

/** Rights that make sense on a regular file (not a directory) in a path-beneath rule. */
export const FILE_RIGHTS = FS.EXECUTE | FS.WRITE_FILE | FS.READ_FILE | FS.TRUNCATE | FS.IOCTL_DEV;

/** The running kernel's Landlock ABI version, or 0 when Landlock is unavailable. */
export function abiVersion(): number {
  const rc = rawSyscall(SYS_landlock_create_ruleset, 0n, 0n, CREATE_RULESET_VERSION);
  return rc < 0n ? 0 : Number(rc);
}

/** All filesystem rights the given ABI can handle. */
export function fsRightsFor(abi: number): bigint {
  if (abi < 1) return 0n;
  let rights = (1n << 13n) - 1n;
  if (abi >= 2) rights |= FS.REFER;
  if (abi >= 3) rights |= FS.TRUNCATE;
  if (abi >= 5) rights |= FS.IOCTL_DEV;
  return rights;
}
export function netRightsFor(abi: number): bigint {
  return abi >= 4 ? NET.BIND_TCP | NET.CONNECT_TCP : 0n;
}
export function scopesFor(abi: number): bigint {
  return abi >= 6 ? SCOPE.ABSTRACT_UNIX_SOCKET | SCOPE.SIGNAL : 0n;
}

export interface PathRule {
  path: string;
  access: bigint;
}
export interface PortRule {
  port: number;
  access: bigint;
}
export interface RulesetSpec {
  handledFs: bigint;
  handledNet: bigint;
  scoped: bigint;
  paths: PathRule[];
  ports: PortRule[];
}

function ptr(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/**
 * Builds a ruleset and restricts the calling thread (and every process it starts afterwards).
 * The caller must have set no_new_privs or hold CAP_SYS_ADMIN. `isDirectory` decides which
 * rights a path rule may carry (the kernel rejects directory rights on files).
 */
export function restrictSelf(spec: RulesetSpec, abi: number, isDirectory: (p: string) => boolean) {
  // struct landlock_ruleset_attr { u64 handled_access_fs; u64 handled_access_net; u64 scoped; }
  const attr = new BigUint64Array([spec.handledFs, spec.handledNet, spec.scoped]);
  const attrSize = abi >= 6 ? 24n : abi >= 4 ? 16n : 8n;
  const attrBytes = new Uint8Array(attr.buffer);
  const rulesetFd = Number(
    rawSyscall(SYS_landlock_create_ruleset, ptr(attrBytes), attrSize, 0n),
  );
  if (rulesetFd < 0) throw new OsError("landlock_create_ruleset", lastErr());
  try {
    for (const rule of spec.paths) {
      let access = rule.access & spec.handledFs;
      if (!isDirectory(rule.path)) access &= FILE_RIGHTS;
      if (access === 0n) continue;
      const fd = open(rule.path, O.PATH | O.CLOEXEC);
      try {
        // struct landlock_path_beneath_attr { u64 allowed_access; s32 parent_fd; } __packed
        const buf = new Uint8Array(12);
        const view = new DataView(buf.buffer);
        view.setBigUint64(0, access, true);
        view.setInt32(8, fd, true);
        const rc = rawSyscall(
          SYS_landlock_add_rule,
          BigInt(rulesetFd),
          RULE_PATH_BENEATH,
          ptr(buf),
          0n,
        );
        if (rc < 0n) throw new OsError("landlock_add_rule", lastErr(), rule.path);
      } finally {
        close(fd);
      }
    }
    for (const rule of spec.ports) {
      const access = rule.access & spec.handledNet;
      if (access === 0n) continue;
      // struct landlock_net_port_attr { u64 allowed_access; u64 port; }
      const buf = new BigUint64Array([access, BigInt(rule.port)]);
      const rc = rawSyscall(
        SYS_landlock_add_rule,
        BigInt(rulesetFd),
        RULE_NET_PORT,
        ptr(new Uint8Array(buf.buffer)),
        0n,
      );
      if (rc < 0n) throw new OsError("landlock_add_rule", lastErr(), `port ${rule.port}`);
    }
    const flags = abi >= 7 ? RESTRICT_SELF_LOG_NEW_EXEC_ON : 0n;
    const rc = rawSyscall(SYS_landlock_restrict_self, BigInt(rulesetFd), flags);
    if (rc < 0n) throw new OsError("landlock_restrict_self", lastErr());
  } finally {
    close(rulesetFd);
  }
}

function lastErr(): number {
  return lastErrno() || 22;
}
