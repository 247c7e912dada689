// Kernel auditing that clawcage turned on (audit.kernel_denials: enable) must be turned off again
// by the LAST run that relies on it, not by the first one to finish (that would silence another
// sandbox's denials), and also after a supervisor died with kill -9 (that would leave the host's
// auditing changed for good). The state sits in a root-only directory:
//
//   <dir>/on-by-clawcage    exists while auditing is on because a clawcage run turned it on
//   <dir>/users/<pid>.<t>   one file per run relying on it: pid and the process start time (field
//                           22 of /proc/PID/stat), so a reused pid does not keep a dead run alive
//   <dir>/lock              flock(2) held around every change
//
// Auditing that was on before clawcage came (auditd, `auditctl -e 1`) is never turned off: without
// `on-by-clawcage` nothing here touches it. A leftover (marker, no live user) is turned off by the
// next run that reads denials, or adopted by it when that run turns auditing on anyway.

import { AuditSocket } from "../../ffi/audit_netlink.ts";
import { type FileLock, tryLockExclusive } from "../../ffi/flock.ts";

export const KERNEL_AUDIT_STATE_DIR = "/run/clawcage/kernel-audit";

const MARKER = "on-by-clawcage";

/** This process's id in users/: `<pid>.<start time>`, or null when /proc does not say. */
function processKey(pid: number): string | null {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  return start ? `${pid}.${start}` : null;
}

function isAlive(key: string): boolean {
  const pid = Number(key.split(".")[0]);
  return Number.isInteger(pid) && pid > 0 && processKey(pid) === key;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function ensureDir(path: string): void {
  Deno.mkdirSync(path, { recursive: true, mode: 0o700 });
  const st = Deno.lstatSync(path);
  if (!st.isDirectory || st.uid !== Deno.uid() || ((st.mode ?? 0) & 0o077) !== 0) {
    throw new Error(`${path} must be a directory owned by uid ${Deno.uid()} with mode 0700`);
  }
}

async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  ensureDir(dir);
  ensureDir(`${dir}/users`);
  let lock: FileLock | null = null;
  for (let i = 0; i < 500 && lock === null; i++) {
    lock = tryLockExclusive(`${dir}/lock`);
    if (lock === null) await new Promise((r) => setTimeout(r, 10));
  }
  if (lock === null) throw new Error(`${dir}/lock is held by another process for over 5 s`);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/** Live users; files of dead ones are removed. */
function liveUsers(dir: string): string[] {
  const live: string[] = [];
  for (const e of Deno.readDirSync(`${dir}/users`)) {
    if (isAlive(e.name)) live.push(e.name);
    else Deno.removeSync(`${dir}/users/${e.name}`);
  }
  return live;
}

/** AUDIT_SET enabled (CAP_AUDIT_CONTROL). */
export async function setKernelAudit(on: boolean): Promise<void> {
  const ctl = AuditSocket.open(0);
  try {
    await ctl.setEnabled(on);
  } finally {
    ctl.close();
  }
}

/** Whether kernel auditing is enabled now. */
export async function kernelAuditOn(): Promise<boolean> {
  const ctl = AuditSocket.open(0);
  try {
    return (await ctl.status()).enabled !== 0;
  } finally {
    ctl.close();
  }
}

/** Whether a leftover exists (for doctor): the marker without a live user. Changes nothing. */
export function kernelAuditLeftover(dir = KERNEL_AUDIT_STATE_DIR): boolean {
  if (!exists(`${dir}/${MARKER}`)) return false;
  try {
    return Array.from(Deno.readDirSync(`${dir}/users`)).every((e) => !isAlive(e.name));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}

/** This run's hold on kernel auditing: while any run holds it, clawcage leaves auditing on. */
export class KernelAuditLease {
  readonly #dir: string;
  readonly #key: string;
  #released = false;

  private constructor(dir: string, key: string) {
    this.#dir = dir;
    this.#key = key;
  }

  /**
   * Registers this process as relying on kernel auditing. When auditing is off, `enable` turns it
   * on (and marks it as clawcage's); without it the answer is null (nothing to read). Auditing a
   * crashed run left on is adopted by an `enable` run and turned off otherwise.
   */
  static acquire(
    opts: { enable: boolean; dir?: string },
  ): Promise<KernelAuditLease | null> {
    const dir = opts.dir ?? KERNEL_AUDIT_STATE_DIR;
    const key = processKey(Deno.pid);
    if (key === null) throw new Error(`cannot read /proc/${Deno.pid}/stat`);
    return withLock(dir, async () => {
      const leftover = exists(`${dir}/${MARKER}`) && liveUsers(dir).length === 0;
      if (leftover && !opts.enable) {
        if (await kernelAuditOn()) await setKernelAudit(false);
        Deno.removeSync(`${dir}/${MARKER}`);
      }
      if (!(await kernelAuditOn())) {
        if (!opts.enable) return null;
        // Marker first: if we die between the two, the next run finds a marker and turns
        // auditing off (harmless when it was still off).
        Deno.writeTextFileSync(`${dir}/${MARKER}`, `${new Date().toISOString()}\n`, {
          mode: 0o600,
        });
        await setKernelAudit(true);
      }
      Deno.writeTextFileSync(`${dir}/users/${key}`, "", { mode: 0o600 });
      return new KernelAuditLease(dir, key);
    });
  }

  /** Drops this run's hold; the last holder turns auditing off if clawcage turned it on. */
  release(): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#released = true;
    return withLock(this.#dir, async () => {
      try {
        Deno.removeSync(`${this.#dir}/users/${this.#key}`);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (!exists(`${this.#dir}/${MARKER}`) || liveUsers(this.#dir).length > 0) return;
      if (await kernelAuditOn()) await setKernelAudit(false);
      Deno.removeSync(`${this.#dir}/${MARKER}`);
    });
  }
}
