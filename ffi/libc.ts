// Thin, typed bindings to glibc. No policy here: callers decide what to restrict.
// Every wrapper throws an `OsError` carrying errno on failure.

const symbols = {
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  setresuid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  setresgid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  setgroups: { parameters: ["usize", "buffer"], result: "i32" },
  capset: { parameters: ["buffer", "buffer"], result: "i32" },
  sethostname: { parameters: ["buffer", "usize"], result: "i32" },
  // syscall(2) and ioctl(2) are variadic; on x86_64 and aarch64 Linux integer varargs are
  // passed exactly like fixed arguments, so a fixed-arity declaration is correct there.
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  getpid: { parameters: [], result: "i32" },
  getuid: { parameters: [], result: "u32" },
  geteuid: { parameters: [], result: "u32" },
  getgid: { parameters: [], result: "u32" },
  isatty: { parameters: ["i32"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32", nonblocking: true },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  posix_spawnp: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_addchdir_np: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_addclose: { parameters: ["buffer", "i32"], result: "i32" },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  sigfillset: { parameters: ["buffer"], result: "i32" },
  sigemptyset: { parameters: ["buffer"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

export class OsError extends Error {
  constructor(readonly call: string, readonly errno: number, detail = "") {
    super(`${call}${detail ? ` ${detail}` : ""}: ${strerror(errno)} (errno ${errno})`);
  }
}

export const errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENOTDIR: 20,
  EINVAL: 22,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
  ECHILD: 10,
} as const;

export function lastErrno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

export function strerror(n: number): string {
  const p = libc().strerror(n);
  return p === null ? `errno ${n}` : new Deno.UnsafePointerView(p).getCString();
}

const encoder = new TextEncoder();
/** A NUL-terminated copy of `s`, suitable for a "buffer" parameter. */
export function cstring(s: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(s);
  if (bytes.includes(0)) throw new Error(`string contains NUL: ${JSON.stringify(s)}`);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

function check(call: string, rc: number | bigint, detail = ""): void {
  if (Number(rc) === -1) throw new OsError(call, lastErrno(), detail);
}

// ---- prctl -------------------------------------------------------------------------------
export const PR = {
  SET_PDEATHSIG: 1,
  SET_DUMPABLE: 4,
  CAPBSET_DROP: 24,
  SET_CHILD_SUBREAPER: 36,
  SET_NO_NEW_PRIVS: 38,
  GET_NO_NEW_PRIVS: 39,
  CAP_AMBIENT: 47,
  CAP_AMBIENT_CLEAR_ALL: 4,
} as const;

export function prctl(option: number, a = 0n, b = 0n, c = 0n, d = 0n): number {
  const rc = libc().prctl(option, a, b, c, d);
  check("prctl", rc, `(${option})`);
  return rc;
}

// ---- mounts ------------------------------------------------------------------------------
export const MS = {
  RDONLY: 1n,
  NOSUID: 2n,
  NODEV: 4n,
  NOEXEC: 8n,
  REMOUNT: 32n,
  BIND: 4096n,
  REC: 16384n,
  PRIVATE: 1n << 18n,
} as const;

export function mount(
  source: string | null,
  target: string,
  fstype: string | null,
  flags: bigint,
  data: string | null = null,
): void {
  const rc = libc().mount(
    source === null ? null : cstring(source),
    cstring(target),
    fstype === null ? null : cstring(fstype),
    flags,
    data === null ? null : cstring(data),
  );
  check("mount", rc, target);
}

export function umount2(target: string, flags = 0): void {
  check("umount2", libc().umount2(cstring(target), flags), target);
}

// ---- credentials -------------------------------------------------------------------------
export function setresuid(r: number, e: number, s: number): void {
  check("setresuid", libc().setresuid(r, e, s));
}
export function setresgid(r: number, e: number, s: number): void {
  check("setresgid", libc().setresgid(r, e, s));
}
export function setgroups(gids: number[]): void {
  const list = new Uint32Array(gids.length || 1);
  gids.forEach((g, i) => list[i] = g);
  check("setgroups", libc().setgroups(BigInt(gids.length), new Uint8Array(list.buffer)));
}

const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
/** Sets the calling thread's effective, permitted and inheritable capability sets to empty. */
export function clearCapabilities(): void {
  const header = new Uint32Array([LINUX_CAPABILITY_VERSION_3, 0]);
  const data = new Uint32Array(6); // two __user_cap_data_struct {effective, permitted, inheritable}
  check("capset", libc().capset(new Uint8Array(header.buffer), new Uint8Array(data.buffer)));
}

export function getuid(): number {
  return libc().getuid();
}
export function geteuid(): number {
  return libc().geteuid();
}
export function getgid(): number {
  return libc().getgid();
}
export function getpid(): number {
  return libc().getpid();
}

// ---- misc --------------------------------------------------------------------------------
export function sethostname(name: string): void {
  const bytes = encoder.encode(name);
  check("sethostname", libc().sethostname(bytes, BigInt(bytes.length)));
}

export function rawSyscall(nr: number, ...args: bigint[]): bigint {
  const a = [...args, 0n, 0n, 0n, 0n, 0n].slice(0, 5);
  return libc().syscall(BigInt(nr), a[0], a[1], a[2], a[3], a[4]);
}

/**
 * Marks every descriptor from `first` up close-on-exec (close_range(2) with
 * CLOSE_RANGE_CLOEXEC; syscall 436 on x86_64 and aarch64), so nothing this process inherited
 * leaks into programs it starts.
 */
export function cloexecFrom(first: number): void {
  const SYS_close_range = 436, CLOSE_RANGE_CLOEXEC = 4n;
  const rc = rawSyscall(SYS_close_range, BigInt(first), 0xffffffffn, CLOSE_RANGE_CLOEXEC);
  if (rc < 0n) throw new OsError("close_range", lastErrno());
}

export function kill(pid: number, sig: number): void {
  check("kill", libc().kill(pid, sig), `pid ${pid}`);
}

export function isatty(fd: number): boolean {
  return libc().isatty(fd) === 1;
}

export const O = { PATH: 0o10000000, CLOEXEC: 0o2000000, RDONLY: 0 } as const;
export function open(path: string, flags: number, mode = 0): number {
  const fd = libc().open(cstring(path), flags, mode);
  check("open", fd, path);
  return fd;
}
export function close(fd: number): void {
  check("close", libc().close(fd));
}

/** Brings a network interface up (SIOCGIFFLAGS / SIOCSIFFLAGS on an AF_INET socket). */
export function interfaceUp(name: string): void {
  const SIOCGIFFLAGS = 0x8913n, SIOCSIFFLAGS = 0x8914n, IFF_UP = 0x1, IFF_RUNNING = 0x40;
  const fd = libc().socket(2, /* AF_INET */ 2 /* SOCK_DGRAM */ | 0o2000000, 0);
  check("socket", fd);
  try {
    const ifreq = new Uint8Array(40); // char ifr_name[16]; short ifr_flags at offset 16
    ifreq.set(encoder.encode(name).subarray(0, 15));
    check("ioctl(SIOCGIFFLAGS)", libc().ioctl(fd, SIOCGIFFLAGS, ifreq), name);
    const view = new DataView(ifreq.buffer);
    view.setInt16(16, view.getInt16(16, true) | IFF_UP | IFF_RUNNING, true);
    check("ioctl(SIOCSIFFLAGS)", libc().ioctl(fd, SIOCSIFFLAGS, ifreq), name);
  } finally {
    libc().close(fd);
  }
}

// ---- processes ---------------------------------------------------------------------------
export interface WaitResult {
  pid: number;
  /** Exit code when the process exited normally. */
  code: number | null;
  /** Signal number when the process was killed by a signal. */
  signal: number | null;
}

/** waitpid(2) on a worker thread, so the event loop keeps running. */
export async function waitpid(pid: number): Promise<WaitResult | null> {
  const status = new Int32Array(1);
  for (;;) {
    const rc = await libc().waitpid(pid, new Uint8Array(status.buffer), 0);
    if (rc === -1) {
      const e = lastErrno();
      if (e === errno.EINTR) continue;
      if (e === errno.ECHILD) return null;
      throw new OsError("waitpid", e);
    }
    const s = status[0];
    const termsig = s & 0x7f;
    if (termsig === 0) return { pid: rc, code: (s >> 8) & 0xff, signal: null };
    if (termsig !== 0x7f) return { pid: rc, code: null, signal: termsig };
  }
}

export interface SpawnOptions {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

/**
 * posix_spawnp(3) from the calling (main) thread: the child inherits this thread's Landlock
 * domain, seccomp filter, credentials and no_new_privs. Signal dispositions are reset to
 * default and the signal mask is cleared in the child. Returns the child's pid.
 */
export function spawn(opts: SpawnOptions): number {
  const c = libc();
  const keep: Uint8Array[] = [];
  const ptrArray = (strings: string[]) => {
    const ptrs = new BigUint64Array(strings.length + 1);
    strings.forEach((s, i) => {
      const b = cstring(s);
      keep.push(b);
      ptrs[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
    });
    return new Uint8Array(ptrs.buffer);
  };
  const argv = ptrArray(opts.argv);
  const envp = ptrArray(Object.entries(opts.env).map(([k, v]) => `${k}=${v}`));
  const actions = new Uint8Array(256);
  const attr = new Uint8Array(512);
  const allSignals = new Uint8Array(128);
  const noSignals = new Uint8Array(128);
  c.posix_spawn_file_actions_init(actions);
  c.posix_spawn_file_actions_addchdir_np(actions, cstring(opts.cwd));
  c.posix_spawnattr_init(attr);
  c.sigfillset(allSignals);
  c.sigemptyset(noSignals);
  c.posix_spawnattr_setsigdefault(attr, allSignals);
  c.posix_spawnattr_setsigmask(attr, noSignals);
  const POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08;
  c.posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  const pid = new Int32Array(1);
  const rc = c.posix_spawnp(
    new Uint8Array(pid.buffer),
    cstring(opts.argv[0]),
    actions,
    attr,
    argv,
    envp,
  );
  if (rc !== 0) throw new OsError("posix_spawnp", rc, opts.argv[0]);
  keep.length = 0;
  return pid[0];
}
