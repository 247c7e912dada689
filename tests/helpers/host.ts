// What this host supports, so tests can skip with a reason instead of failing.

import { abiVersion } from "../../ffi/landlock.ts";
import { geteuid } from "../../ffi/libc.ts";
import { libraryVersion } from "../../ffi/seccomp.ts";
import { systemProgram } from "../../core/self.ts";

export const isRoot = geteuid() === 0;
export const landlockAbi = abiVersion();
export const hasSeccomp = libraryVersion() !== null;
export const hasUtilLinux = systemProgram("unshare") !== null && systemProgram("setpriv") !== null;
export const cc = systemProgram("cc") ?? systemProgram("gcc");

/** Why the full sandbox cannot be built here, or null when it can. */
export function sandboxSkipReason(): string | null {
  if (!isRoot) return "needs root for namespaces";
  if (landlockAbi < 1) return "kernel has no Landlock";
  if (!hasSeccomp) return "libseccomp.so.2 missing";
  if (!hasUtilLinux) return "util-linux unshare/setpriv missing";
  return null;
}
