// libseccomp.so.2 through FFI. libseccomp resolves syscall names for the running
// architecture, so callers give names, never numbers.

/** SCMP_CMP_* comparison operators. */
export const CMP = { NE: 1, LT: 2, LE: 3, EQ: 4, GE: 5, GT: 6, MASKED_EQ: 7 } as const;
export type CmpOp = keyof typeof CMP;

export interface ArgCmp {
  /** Argument index, 0..5. */
  arg: number;
  op: CmpOp;
  value: bigint;
  /** For MASKED_EQ: (arg & mask) == value. */
  mask?: bigint;
}

export type SeccompAction = { errno: number } | "allow" | "kill-process";

export interface SeccompRule {
  syscall: string;
  action: SeccompAction;
  args?: ArgCmp[];
}

export interface SeccompFilter {
  defaultAction: SeccompAction;
  rules: SeccompRule[];
  /** Apply to every thread of the process (SECCOMP_FILTER_FLAG_TSYNC). */
  tsync: boolean;
}

const ATTR = { ACT_BADARCH: 2, CTL_NNP: 3, CTL_TSYNC: 4 } as const;
const ACT_ALLOW = 0x7fff0000;
const ACT_KILL_PROCESS = 0x80000000;
const ACT_ERRNO = 0x00050000;

const symbols = {
  seccomp_init: { parameters: ["u32"], result: "pointer" },
  seccomp_release: { parameters: ["pointer"], result: "void" },
  seccomp_attr_set: { parameters: ["pointer", "i32", "u32"], result: "i32" },
  seccomp_syscall_resolve_name: { parameters: ["buffer"], result: "i32" },
  seccomp_rule_add_array: {
    parameters: ["pointer", "u32", "i32", "u32", "buffer"],
    result: "i32",
  },
  seccomp_load: { parameters: ["pointer"], result: "i32" },
  seccomp_version: { parameters: [], result: "pointer" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
function seccomp() {
  lib ??= Deno.dlopen("libseccomp.so.2", symbols);
  return lib.symbols;
}

/** Loads libseccomp now, e.g. before Landlock takes away read access to /usr/lib. */
export function openSeccompLibrary(): void {
  seccomp();
}

export class SeccompError extends Error {}

/** libseccomp's version as "major.minor.micro", or null when the library cannot be loaded. */
export function libraryVersion(): string | null {
  try {
    const p = seccomp().seccomp_version();
    if (p === null) return null;
    const v = new Deno.UnsafePointerView(p);
    return `${v.getUint32(0)}.${v.getUint32(4)}.${v.getUint32(8)}`;
  } catch {
    return null;
  }
}

function encodeAction(a: SeccompAction): number {
  if (a === "allow") return ACT_ALLOW;
  if (a === "kill-process") return ACT_KILL_PROCESS;
  return ACT_ERRNO | (a.errno & 0xffff);
}

const encoder = new TextEncoder();
/** The syscall number on this architecture, or null if it does not exist here. */
export function resolveSyscall(name: string): number | null {
  const nr = seccomp().seccomp_syscall_resolve_name(encoder.encode(name + "\0"));
  return nr < 0 ? null : nr;
}

/**
 * Compiles and loads the filter into the calling thread (all threads with `tsync`).
 * Syscalls that do not exist on this architecture are skipped and returned.
 * Syscalls of other architectures (e.g. i386 via int 0x80 on x86_64) kill the process.
 */
export function loadFilter(filter: SeccompFilter): { skipped: string[]; loaded: number } {
  const s = seccomp();
  const ctx = s.seccomp_init(encodeAction(filter.defaultAction));
  if (ctx === null) throw new SeccompError("seccomp_init failed");
  const skipped: string[] = [];
  let loaded = 0;
  try {
    const attr = (name: keyof typeof ATTR, value: number) => {
      const rc = s.seccomp_attr_set(ctx, ATTR[name], value);
      if (rc < 0) throw new SeccompError(`seccomp_attr_set(${name}): error ${-rc}`);
    };
    attr("ACT_BADARCH", ACT_KILL_PROCESS);
    attr("CTL_NNP", 1);
    if (filter.tsync) attr("CTL_TSYNC", 1);
    for (const rule of filter.rules) {
      const nr = resolveSyscall(rule.syscall);
      if (nr === null) {
        skipped.push(rule.syscall);
        continue;
      }
      const args = rule.args ?? [];
      // struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op; u64 datum_a; u64 datum_b; }
      const buf = new Uint8Array(24 * Math.max(args.length, 1));
      const view = new DataView(buf.buffer);
      args.forEach((a, i) => {
        view.setUint32(i * 24, a.arg, true);
        view.setUint32(i * 24 + 4, CMP[a.op], true);
        if (a.op === "MASKED_EQ") {
          view.setBigUint64(i * 24 + 8, a.mask ?? 0n, true);
          view.setBigUint64(i * 24 + 16, a.value, true);
        } else {
          view.setBigUint64(i * 24 + 8, a.value, true);
        }
      });
      const rc = s.seccomp_rule_add_array(ctx, encodeAction(rule.action), nr, args.length, buf);
      if (rc < 0) {
        throw new SeccompError(`seccomp_rule_add_array(${rule.syscall}): error ${-rc}`);
      }
      loaded++;
    }
    const rc = s.seccomp_load(ctx);
    if (rc < 0) throw new SeccompError(`seccomp_load: error ${-rc}`);
    return { skipped, loaded };
  } finally {
    s.seccomp_release(ctx);
  }
}
