// `clawcage doctor [--json]`: what this host supports, layer by layer, and what to do.

import { parseArgs } from "node:util";
import { abiVersion } from "../../ffi/landlock.ts";
import { geteuid } from "../../ffi/libc.ts";
import { libraryVersion } from "../../ffi/seccomp.ts";
import { systemProgram } from "../self.ts";
import { printJson, UsageError } from "./common.ts";
import { auditChecks } from "../audit/doctor_checks.ts";
import { auditSettings } from "../audit/settings.ts";
import { loadPolicyFile, PolicyError } from "../policy/load.ts";

export type CheckStatus = "ok" | "missing" | "warn";
export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it (empty when ok). */
  fix: string;
}

function read(path: string): string | null {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return null;
  }
}

export function runChecks(): Check[] {
  const checks: Check[] = [];
  const add = (name: string, status: CheckStatus, detail: string, fix = "") =>
    checks.push({ name, status, detail, fix });
  const root = geteuid() === 0;

  add("kernel", "ok", `Linux ${Deno.osRelease()} (${Deno.build.arch})`);

  const abi = abiVersion();
  if (abi === 0) {
    add(
      "landlock",
      "missing",
      "Landlock is not enabled in this kernel",
      "boot a kernel >= 5.13 with lsm=...,landlock",
    );
  } else {
    const rights = ["files"];
    if (abi >= 4) rights.push("TCP bind/connect");
    if (abi >= 6) rights.push("abstract-socket and signal scoping");
    if (abi >= 7) rights.push("denial logging");
    add(
      "landlock",
      abi >= 6 ? "ok" : "warn",
      `ABI ${abi}: ${rights.join(", ")}`,
      abi >= 6 ? "" : "a kernel >= 6.12 adds scoping (ABI 6)",
    );
  }

  const seccompMode = read("/proc/self/status")?.match(/^Seccomp:\s*(\d)/m)?.[1];
  const lib = libraryVersion();
  if (seccompMode === undefined) {
    add("seccomp", "missing", "kernel without seccomp", "boot a kernel with CONFIG_SECCOMP_FILTER");
  } else if (lib === null) {
    add(
      "seccomp",
      "missing",
      "libseccomp.so.2 not found",
      "apt-get install libseccomp2 (or dnf install libseccomp)",
    );
  } else {
    add(
      "seccomp",
      "ok",
      `libseccomp ${lib}${seccompMode !== "0" ? " (this process is already filtered)" : ""}`,
    );
  }

  const unshare = systemProgram("unshare");
  const setpriv = systemProgram("setpriv");
  if (!unshare || !setpriv) {
    add(
      "util-linux",
      "missing",
      `${!unshare ? "unshare " : ""}${!setpriv ? "setpriv " : ""}not found`.trim(),
      "install util-linux",
    );
  } else {
    add("util-linux", "ok", `${unshare}, ${setpriv}`);
  }

  if (root) {
    add(
      "namespaces",
      unshare ? "ok" : "missing",
      "root: mount, PID, network, IPC, UTS and cgroup namespaces",
      unshare ? "" : "install util-linux",
    );
  } else {
    add(
      "namespaces",
      "warn",
      "not root: `clawcage run` needs --rootless (Landlock + seccomp only, no namespaces)",
      "run as root (or from the systemd service) for the full sandbox",
    );
  }

  const maxUserNs = Number(read("/proc/sys/user/max_user_namespaces") ?? "0");
  const unprivClone = read("/proc/sys/kernel/unprivileged_userns_clone");
  const apparmorUserns = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
  const usernsBlocked = maxUserNs === 0 || unprivClone === "0" || apparmorUserns === "1";
  add(
    "user namespaces",
    usernsBlocked ? "warn" : "ok",
    usernsBlocked
      ? `unprivileged user namespaces are blocked (max_user_namespaces=${maxUserNs}${
        unprivClone !== null ? `, unprivileged_userns_clone=${unprivClone}` : ""
      }${
        apparmorUserns !== null ? `, apparmor_restrict_unprivileged_userns=${apparmorUserns}` : ""
      })`
      : `allowed (max_user_namespaces=${maxUserNs}); agents are denied them by seccomp either way`,
  );

  const cgroup2 = read("/sys/fs/cgroup/cgroup.controllers");
  add(
    "cgroup v2",
    cgroup2 !== null ? "ok" : "warn",
    cgroup2 !== null
      ? `controllers: ${cgroup2 || "(none delegated)"}`
      : "not mounted at /sys/fs/cgroup",
    cgroup2 !== null ? "" : "mount cgroup2 (systemd does by default)",
  );

  const container = read("/proc/1/environ")?.includes("container=") ||
    read("/.dockerenv") !== null ||
    (read("/proc/1/cgroup") ?? "").match(/docker|kubepods|containerd|lxc/) !== null;
  if (container) {
    add(
      "container",
      "warn",
      "running inside a container: namespaces and Landlock may be restricted by its runtime",
    );
  }

  const tiocsti = read("/proc/sys/dev/tty/legacy_tiocsti");
  add(
    "tty injection",
    "ok",
    tiocsti === "0"
      ? "kernel TIOCSTI disabled; seccomp denies it too"
      : "seccomp denies TIOCSTI and TIOCLINUX",
  );
  return checks;
}

/** The sandbox layers `run` would use here: "full", "rootless" or null if it cannot run. */
export function summarize(checks: Check[]): string {
  const get = (n: string) => checks.find((c) => c.name === n)?.status;
  if (get("seccomp") === "missing" || get("util-linux") === "missing") {
    return "cannot sandbox: see the missing items above";
  }
  const ns = get("namespaces") === "ok";
  const ll = get("landlock") !== "missing";
  if (ns && ll) return "full sandbox available: namespaces + Landlock + seccomp";
  if (ll) return "rootless sandbox available (--rootless): Landlock + seccomp, no namespaces";
  return "Landlock missing: only policies with landlock.compatibility: best_effort will run";
}

/** Which device the privacy router's in-process models (llama-cpp backends) would use. */
export async function localInferenceCheck(): Promise<Check> {
  const name = "local inference";
  const { runtimeInfo, describeRuntime } = await import("../../router/backends/llama_runtime.ts");
  const nvidia = read("/proc/driver/nvidia/version") !== null;
  try {
    const info = await runtimeInfo();
    if (info.device !== "cpu") {
      return { name, status: "ok", detail: `llama.cpp on ${describeRuntime(info)}`, fix: "" };
    }
    return {
      name,
      status: "warn",
      detail: `llama.cpp on ${describeRuntime(info)}: local models will be slow`,
      fix: nvidia
        ? "an NVIDIA driver is loaded but the CUDA build of llama.cpp did not start: check that libcuda.so.1 is visible (ldconfig -p | grep libcuda) and that npm installed @node-llama-cpp/linux-*-cuda"
        : "",
    };
  } catch (e) {
    return {
      name,
      status: "warn",
      detail: `the llama.cpp runtime does not load (${(e as Error).message.split("\n")[0]})`,
      fix: "llama-cpp backends cannot run here; use a local server (type openai) instead",
    };
  }
}

export async function doctorCommand(args: string[]): Promise<number> {
  let json = false;
  let policyPath: string | undefined;
  try {
    const { values } = parseArgs({
      args,
      options: { json: { type: "boolean" }, policy: { type: "string", short: "p" } },
    });
    json = values.json ?? false;
    policyPath = values.policy;
  } catch (e) {
    throw new UsageError(
      `${(e as Error).message} (usage: clawcage doctor [--json] [--policy FILE])`,
    );
  }
  let policy;
  try {
    policy = policyPath ? await loadPolicyFile(policyPath) : undefined;
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    // Machine readers get JSON either way: the problems, each with file:line:column.
    if (json) printJson({ ok: false, policy: policyPath, error: e.message, problems: e.problems });
    throw new UsageError(e.message);
  }
  const checks = runChecks();
  // The audit trail as `clawcage run` would write it (with --policy: as that policy says).
  checks.push(...await auditChecks(auditSettings(policy?.audit)));
  checks.push(await localInferenceCheck());
  const summary = summarize(checks);
  const failed = checks.some((c) => c.status === "missing");
  if (json) {
    printJson({ checks, summary, ok: !failed });
  } else {
    const mark = { ok: "ok     ", warn: "warn   ", missing: "MISSING" };
    for (const c of checks) {
      console.log(`${mark[c.status]}  ${c.name.padEnd(16)} ${c.detail}`);
      if (c.fix) console.log(`         ${"".padEnd(16)} -> ${c.fix}`);
    }
    console.log(`\n${summary}`);
  }
  return failed ? 1 : 0;
}
