// Why the sandbox-side egress tests cannot run here, or null when they can.

import { systemProgram } from "../../core/self.ts";
export { sandboxSkipReason } from "../helpers/host.ts";

/** The first of `programs` missing from /usr/bin, as a skip reason, or null. */
export function systemProgramSkip(programs: string[]): string | null {
  for (const p of programs) {
    if (systemProgram(p) === null) return `${p} not installed (apt-get install ${p})`;
  }
  return null;
}
