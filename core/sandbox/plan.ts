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
  /** With namespaces and egress: the bridge from 127.0.0.1:3128 inside to the proxy outside. */
  bridge?: BridgePlan | null;
  /** With egress: the CA bundle the agent trusts, bound read-only into the sandbox. */
  caBundle?: { source: string; target: string } | null;
  /** System calls the policy's seccomp section denies on top of the built-in profile. */
  denySyscalls?: string[];
  /** Directories replaced by an empty read-only tmpfs (mode 000): the audit log and key. */
  hiddenDirs?: string[];
  /** Set by the supervisor: where the stage reports the agent's pid and exit status. */
  statusFile?: string;
}

export interface BridgePlan {
  /** Host directory holding the proxy's socket; the stage opens it before hiding /run. */
  socketDir: string;
  socketName: string;
  /** The supervisor's runtime directory: must not be visible inside the sandbox. */
  runtimeDir: string;
  port: number;
}

/** Where the supervisor put the egress proxy for this sandbox. */
export interface EgressEndpoint {
  /** The supervisor's runtime directory (0700, root's or the caller's). */
  runtimeDir: string;
  /** Namespaces: the directory holding the proxy's unix socket, and the socket's name in it. */
  socketDir: string | null;
  socketName: string;
  /** Rootless: the proxy's TCP port on the host's loopback. */
  proxyPort: number | null;
  /** System roots + the sandbox's CA certificate (never the key), or null. */
  caBundle: string | null;
  /** Variables the agent gets from egress (credential placeholders), or none. */
  agentEnv?: Record<string, string>;
}

/** The bridge's port inside the sandbox's network namespace. */
export const BRIDGE_PORT = 3128;
/** Where the agent finds the CA bundle when the sandbox has a mount namespace. */
export const SANDBOX_CA_BUNDLE = "/run/clawcage/ca-bundle.pem";
export const PROXY_ENV_NAMES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"];
export const NO_PROXY = "localhost,127.0.0.1,::1";
export const CA_ENV_NAMES = [
  "SSL_CERT_FILE",
  "NODE_EXTRA_CA_CERTS",
  "REQUESTS_CA_BUNDLE",
  "CURL_CA_BUNDLE",
  "GIT_SSL_CAINFO",
  "AWS_CA_BUNDLE",
  "DENO_CERT",
];

/**
 * Routes the agent's traffic to the egress proxy: through the bridge on 127.0.0.1:3128 with
 * namespaces, straight to the proxy's loopback port rootless (Landlock then allows TCP connect
 * to that port only). Sets the proxy and CA variables (overriding --env: they are the only way
 * out). The stage grants the agent read access to the CA bundle (and nothing else there).
 */
export function withEgress(plan: StagePlan, egress: EgressEndpoint): StagePlan {
  const env = { ...plan.env, ...egress.agentEnv };
  let port: number;
  let bridge: BridgePlan | null = null;
  let connectPorts = plan.connectPorts;
  if (plan.namespaces) {
    if (egress.socketDir === null) throw new PlanError("egress: no proxy socket for the bridge");
    bridge = {
      socketDir: egress.socketDir,
      socketName: egress.socketName,
      runtimeDir: egress.runtimeDir,
      port: BRIDGE_PORT,
    };
    port = BRIDGE_PORT;
  } else {
    if (egress.proxyPort === null) throw new PlanError("egress: rootless needs a proxy port");
    port = egress.proxyPort;
    connectPorts = [...connectPorts, port];
  }
  const url = `http://127.0.0.1:${port}`;
  for (const name of PROXY_ENV_NAMES) {
    env[name] = url;
    env[name.toLowerCase()] = url;
  }
  env.NO_PROXY = NO_PROXY;
  env.no_proxy = NO_PROXY;
  let caBundle: StagePlan["caBundle"] = null;
  if (egress.caBundle !== null) {
    const target = plan.namespaces ? SANDBOX_CA_BUNDLE : egress.caBundle;
    caBundle = { source: egress.caBundle, target };
    for (const name of CA_ENV_NAMES) env[name] = target;
  }
  return { ...plan, env, bridge, caBundle, connectPorts };
}

export class PlanError extends Error {}

/**
 * Why the bridge will not be able to name callers, or null. It runs in the agent's Landlock
 * domain and needs /proc (the sandbox's own) to find the process behind a connection.
 */
export function callerIdentityProblem(plan: StagePlan): string | null {
  if (!plan.bridge) return null;
  if (beneathAny("/proc", [...plan.readOnly, ...plan.readWrite])) return null;
  return "the policy does not grant /proc (read_only), so the egress bridge cannot tell which program opens a connection and no binaries: rule will match";
}

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
  /** Run the agent as this user instead of the policy's process.run_as_user. */
  user?: string;
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
  const runAs = opts.user ?? policy.process.run_as_user;
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
