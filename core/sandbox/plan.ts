// Turns a policy and the command line into a StagePlan: everything the stage needs to build
// the sandbox, as plain JSON (the stage receives it from the supervisor).

import type { Policy } from "../policy/schema.ts";
import { type Account, resolveGroup, resolveUser } from "./users.ts";

export interface StagePlan {
  /** Fresh mount, PID, network, IPC, UTS and cgroup namespaces (needs root). */
  namespaces: boolean;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  user: { name: string; uid: number; gid: number; groups: number[] };
  /** Existing paths the agent may read (and execute), and read and write. */
  readOnly: string[];
  readWrite: string[];
  landlockRequired: boolean;
  /** TCP ports the agent may connect to when there is no network namespace. */
  connectPorts: number[];
  /** Directories replaced by an empty private tmpfs inside the mount namespace. */
  privateDirs: string[];
  /** Files hidden behind /dev/null inside the mount namespace (host secrets). */
  maskedFiles: string[];
  hostname: string;
  /** Rootless only: setpriv(1), which starts the agent with a parent-death signal. */
  pdeathsigHelper: string | null;
  /** Forward SIGINT/SIGQUIT to the agent (when no terminal delivers them itself). */
  forwardInterrupts: boolean;
  /** System calls the policy's seccomp section denies on top of the built-in profile. */
  denySyscalls?: string[];
}

export class PlanError extends Error {}

/** Host files that hold secrets: hidden even when a policy grants their directory. */
export const HOST_SECRET_FILES = [
  "/etc/shadow",
  "/etc/shadow-",
  "/etc/gshadow",
  "/etc/gshadow-",
  "/etc/sudoers",
  "/etc/security/opasswd",
  "/etc/ssh/ssh_host_rsa_key",
  "/etc/ssh/ssh_host_ecdsa_key",
  "/etc/ssh/ssh_host_ed25519_key",
  "/etc/ssh/ssh_host_dsa_key",
];

/** Directories that hold other programs' sockets and state: each sandbox gets its own, empty. */
export const PRIVATE_DIRS = ["/tmp", "/var/tmp", "/run", "/dev/shm"];

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Variables passed from the caller's environment to the agent unless --env says otherwise. */
export const PASSTHROUGH_ENV = [
  "TERM",
  "LANG",
  "LANGUAGE",
  "LC_ALL",
  "LC_CTYPE",
  "TZ",
  "COLORTERM",
];

export interface HostView {
  isRoot: boolean;
  uid: number;
  gid: number;
  userName: string;
  passwd: string;
  group: string;
  env: Record<string, string>;
  /** "dir", "file", "other", or null when the path does not exist. */
  kind(path: string): "dir" | "file" | "other" | null;
  stdinIsTerminal: boolean;
  /** Absolute path of a util-linux helper (unshare, setpriv), or null when missing. */
  which(program: string): string | null;
}

export interface RunOptions {
  argv: string[];
  workdir: string;
  /** `K=V` sets a variable; `K` passes the caller's value through. */
  env: string[];
  /** Run without namespaces (Landlock + seccomp only). */
  rootless: boolean;
}

export function normalizePath(p: string): string {
  const parts = p.split("/").filter((s) => s !== "" && s !== ".");
  return "/" + parts.join("/");
}

function isBeneath(path: string, dir: string): boolean {
  return dir === "/" || path === dir || path.startsWith(dir + "/");
}

export function buildPlan(policy: Policy, opts: RunOptions, host: HostView): StagePlan {
  if (opts.argv.length === 0) {
    throw new PlanError("no command given (usage: clawcage run [options] -- COMMAND [ARGS...])");
  }
  const namespaces = host.isRoot && !opts.rootless;
  const workdir = normalizePath(opts.workdir);
  if (host.kind(workdir) !== "dir") {
    throw new PlanError(`working directory ${workdir} does not exist`);
  }

  let user: Account;
  let groups: number[] = [];
  const fs = policy.filesystem_policy;
  const runAs = policy.process.run_as_user;
  if (host.isRoot) {
    if (runAs === undefined) {
      throw new PlanError(
        "the policy has no process.run_as_user; refusing to run the agent as root (set run_as_user, or run_as_user: root to allow it)",
      );
    }
    user = resolveUser(runAs, host.passwd);
    if (policy.process.run_as_group !== undefined) {
      user = { ...user, gid: resolveGroup(policy.process.run_as_group, host.group) };
    }
    groups = [user.gid];
  } else {
    user = { name: host.userName, uid: host.uid, gid: host.gid, home: "/" };
    const wanted = runAs === undefined ? null : resolveUser(runAs, host.passwd);
    if (wanted && wanted.uid !== host.uid && policy.landlock.compatibility === "hard_requirement") {
      throw new PlanError(
        `process.run_as_user ${
          JSON.stringify(runAs)
        } needs root to switch users, and the policy makes every layer a hard requirement`,
      );
    }
  }

  const readWrite = new Set<string>();
  const readOnly = new Set<string>();
  for (const p of fs.read_write.map(normalizePath)) if (host.kind(p) !== null) readWrite.add(p);
  if (fs.include_workdir) readWrite.add(workdir);
  for (const p of fs.read_only.map(normalizePath)) {
    if (host.kind(p) !== null && !readWrite.has(p)) readOnly.add(p);
  }

  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    HOME: workdir,
    USER: user.name,
    LOGNAME: user.name,
  };
  for (const name of PASSTHROUGH_ENV) if (host.env[name] !== undefined) env[name] = host.env[name];
  for (const item of opts.env) {
    const eq = item.indexOf("=");
    const name = eq === -1 ? item : item.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new PlanError(`--env: invalid variable name ${JSON.stringify(name)}`);
    }
    if (eq !== -1) env[name] = item.slice(eq + 1);
    else if (host.env[name] !== undefined) env[name] = host.env[name];
  }

  return {
    namespaces,
    argv: opts.argv,
    env,
    cwd: workdir,
    user: { name: user.name, uid: user.uid, gid: user.gid, groups },
    readOnly: [...readOnly],
    readWrite: [...readWrite],
    landlockRequired: policy.landlock.compatibility === "hard_requirement",
    connectPorts: [],
    privateDirs: namespaces ? PRIVATE_DIRS.filter((d) => host.kind(d) === "dir") : [],
    maskedFiles: namespaces ? HOST_SECRET_FILES.filter((f) => host.kind(f) === "file") : [],
    hostname: "clawcage",
    pdeathsigHelper: namespaces ? null : host.which("setpriv"),
    forwardInterrupts: !host.stdinIsTerminal,
    denySyscalls: policy.seccomp?.deny_syscalls ?? [],
  };
}

/** True when `path` lies inside one of `dirs`. */
export function beneathAny(path: string, dirs: string[]): boolean {
  return dirs.some((d) => isBeneath(path, d));
}
