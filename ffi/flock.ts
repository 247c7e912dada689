// Thin binding for an advisory exclusive lock (open(2) + flock(2) with LOCK_NB). Deno's own
// FsFile.lock() only blocks; callers here need "is someone else holding it?" answered at once.

import { lastErrno, strerror } from "./libc.ts";

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

const O_RDWR = 0o2, O_CREAT = 0o100, O_CLOEXEC = 0o2000000;
const LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;
const EWOULDBLOCK = 11;

function describe(e: number): string {
  return `${strerror(e)} (errno ${e})`;
}

/** A held lock; `release()` drops it (closing the descriptor). */
export interface FileLock {
  release(): void;
}

/**
 * Takes an exclusive lock on `path` (created with `mode` if missing). Returns null when another
 * open file description holds it; throws Deno-style errors for anything else.
 */
export function tryLockExclusive(path: string, mode = 0o600): FileLock | null {
  const c = new TextEncoder().encode(path + "\0");
  const fd = libc().open(c, O_RDWR | O_CREAT | O_CLOEXEC, mode);
  if (fd < 0) throw new Error(`open ${path}: ${describe(lastErrno())}`);
  if (libc().flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const e = lastErrno();
    libc().close(fd);
    if (e === EWOULDBLOCK) return null;
    throw new Error(`flock ${path}: ${describe(e)}`);
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      libc().flock(fd, LOCK_UN);
      libc().close(fd);
    },
  };
}
