// How the binary starts itself again in an internal mode (__stage, __pdp, ...).
// Compiled: the binary itself. From source: `deno run` with exactly the permission flags the
// compiled binary is built with (deno.json's `cli` task and scripts/compile.ts use the same).
//
// Why --allow-all: the program needs --allow-ffi (Landlock, seccomp, mounts), which already
// grants everything a process can do, and Deno only lets --allow-all read /proc (the stage
// and the proxy read /proc/PID/... ). Narrower flags would restrict nothing and break /proc.
// The real restriction of what clawcage itself may do is the kernel's (PDP lockdown, systemd).

import { TRACE_START_ENV } from "./start_trace.ts";

export const PERMISSION_FLAGS = ["--allow-all", "--no-prompt"] as const;

export function isCompiled(): boolean {
  return Deno.mainModule.includes("/deno-compile-");
}

const MAIN = new URL("../main.ts", import.meta.url);

/**
 * The command line that runs this program with `args`. `denoFlags` go to `deno run` when
 * running from source (ignored when compiled), e.g. `--no-code-cache` for the PDP, which may
 * not touch Deno's cache files once locked down.
 */
export function selfCommand(args: string[], denoFlags: string[] = []): string[] {
  if (isCompiled()) return [Deno.execPath(), ...args];
  return [
    Deno.execPath(),
    "run",
    ...PERMISSION_FLAGS,
    "--quiet",
    ...denoFlags,
    MAIN.pathname,
    ...args,
  ];
}

/** Environment an internal mode needs from ours (the Deno cache when running from source). */
export function selfEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  const names = ["DENO_DIR", "HOME", "XDG_CACHE_HOME", "NO_COLOR", "DENO_NO_UPDATE_CHECK"];
  for (const name of [...names, TRACE_START_ENV]) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  env.DENO_NO_UPDATE_CHECK = "1";
  return env;
}

/** Finds a program on the standard system paths (not the caller's PATH). */
export function systemProgram(name: string): string | null {
  for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}
