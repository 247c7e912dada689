// Caller identity: which process opened a TCP connection that we accepted on loopback.
// The peer's address and port -> the client socket's inode in /proc/net/tcp(6) -> the process
// holding `socket:[inode]` in /proc/PID/fd -> its executable (/proc/PID/exe) and a sha256 of
// it (cached by device, inode, size, mtime and ctime). Everything is read from the /proc of the
// reading process's PID and network namespaces, so the stage sees exactly the sandbox.
//
// Limits (see docs/egress.md, "Caller identity"): an interpreter's path names the
// interpreter, not its script; a socket shared by several processes (fork, SCM_RIGHTS) is
// attributed to no one unless all holders run the same executable; processes we may not
// inspect (another uid, not dumpable) are invisible. Unknown callers get exe "".

export interface Caller {
  /** PID in the reader's PID namespace; 0 when unknown. */
  pid: number;
  /** Absolute path of the executable as the sandbox sees it; "" when unknown. */
  exe: string;
  /** Hex sha256 of the executable's contents; "" when unknown or unreadable. */
  sha256: string;
  /**
   * Executables of the parent processes, nearest first, up to (not including) PID 1 or the
   * first parent that cannot be inspected; absent when there are none.
   */
  ancestors?: string[];
}

/** Most ancestors a caller line names (the proxy accepts at most 64). */
export const MAX_ANCESTORS = 64;

export const UNKNOWN_CALLER: Caller = Object.freeze({ pid: 0, exe: "", sha256: "" });

/** One TCP endpoint, with IPv4-mapped IPv6 addresses written as plain IPv4. */
export interface Endpoint {
  address: string;
  port: number;
}

export interface SocketEntry {
  local: Endpoint;
  remote: Endpoint;
  /** The socket's owner (the fsuid that created it). */
  uid: number;
  inode: number;
}

/** A socket as the kernel reports it: its inode and owner uid. */
export interface SocketId {
  inode: number;
  uid: number;
}

/** Normalises an address as Deno reports it ("::ffff:127.0.0.1" -> "127.0.0.1"). */
export function normalizeAddress(address: string): string {
  const a = address.toLowerCase().replace(/^\[|\]$/g, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1];
  if (a.includes(":")) return ipv6ToString(ipv6Parse(a));
  return a;
}

function ipv6Parse(a: string): number[] {
  // Expands "::" and returns 8 groups. Only called on addresses the kernel or Deno wrote.
  const [head, tail] = a.includes("::") ? a.split("::") : [a, null];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === null ? [] : new Array(8 - h.length - t.length).fill("0");
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

function ipv6ToString(groups: number[]): string {
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`;
  }
  return groups.map((g) => g.toString(16)).join(":");
}

/** Decodes a /proc/net/tcp(6) address ("0100007F:1F90"): 32-bit words in host byte order. */
function decodeProcAddress(hex: string): Endpoint {
  const [addr, port] = hex.split(":");
  const bytes: number[] = [];
  for (let w = 0; w < addr.length; w += 8) {
    const word = addr.slice(w, w + 8);
    // Little-endian hosts (x86_64, aarch64): the word's bytes are reversed.
    for (let b = 6; b >= 0; b -= 2) bytes.push(parseInt(word.slice(b, b + 2), 16));
  }
  const address = bytes.length === 4 ? bytes.join(".") : ipv6ToString(
    Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]),
  );
  return { address, port: parseInt(port, 16) };
}

/** Parses the text of /proc/net/tcp or /proc/net/tcp6. */
export function parseProcNetTcp(text: string): SocketEntry[] {
  const entries: SocketEntry[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    entries.push({
      local: decodeProcAddress(f[1]),
      remote: decodeProcAddress(f[2]),
      uid: +f[7],
      inode: +f[9],
    });
  }
  return entries;
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/**
 * The client socket whose local end is `client` and remote end is `server`, or null.
 * `client` is the peer address of a connection we accepted, `server` its local address.
 */
export function findSocket(
  client: Endpoint,
  server: Endpoint,
  procRoot = "/proc",
): SocketId | null {
  const c = { address: normalizeAddress(client.address), port: client.port };
  const s = { address: normalizeAddress(server.address), port: server.port };
  for (const file of ["net/tcp", "net/tcp6"]) {
    for (const e of parseProcNetTcp(readText(`${procRoot}/${file}`))) {
      if (
        e.inode !== 0 && e.local.port === c.port && e.remote.port === s.port &&
        e.local.address === c.address && e.remote.address === s.address
      ) return { inode: e.inode, uid: e.uid };
    }
  }
  return null;
}

/**
 * PIDs (other than our own) that hold `socket:[inode]` open, in ascending order. With `uid`,
 * only processes whose /proc entry that uid owns are searched (a cheap filter: the socket's
 * owner is almost always the process holding it; a process that received it from another uid
 * is missed, and counts as unknown).
 */
export function socketHolders(inode: number, procRoot = "/proc", uid?: number): number[] {
  const target = `socket:[${inode}]`;
  const self = Deno.pid;
  const holders: number[] = [];
  let dirs: Deno.DirEntry[];
  try {
    dirs = [...Deno.readDirSync(procRoot)];
  } catch {
    return [];
  }
  for (const d of dirs) {
    if (!/^\d+$/.test(d.name)) continue;
    const pid = Number(d.name);
    if (pid === self) continue;
    if (uid !== undefined) {
      try {
        if (Deno.statSync(`${procRoot}/${pid}`).uid !== uid) continue;
      } catch {
        continue;
      }
    }
    let fds: Deno.DirEntry[];
    try {
      fds = [...Deno.readDirSync(`${procRoot}/${pid}/fd`)];
    } catch {
      continue; // gone, or not ours to inspect
    }
    for (const fd of fds) {
      try {
        if (Deno.readLinkSync(`${procRoot}/${pid}/fd/${fd.name}`) === target) {
          holders.push(pid);
          break;
        }
      } catch { /* closed meanwhile */ }
    }
  }
  return holders.sort((a, b) => a - b);
}

// node:crypto is loaded when the first executable is hashed, not with this module: the stage
// (which runs the bridge) would otherwise spend ~30 ms loading it before the agent starts.
let nodeCrypto: Promise<typeof import("node:crypto")> | null = null;
function loadNodeCrypto(): Promise<typeof import("node:crypto")> {
  return nodeCrypto ??= import("node:crypto");
}

/**
 * sha256 of executables, keyed by device, inode, size, mtime and ctime (rewritten: rehashed).
 * The file is opened when `hash` is called (so the bytes are those of the file the path named
 * then, even if the process exits meanwhile); reading it is asynchronous, and concurrent
 * requests for the same file share one read.
 */
export class ExeHasher {
  #cache = new Map<string, string>();
  #inflight = new Map<string, Promise<string>>();
  constructor(readonly maxEntries = 256) {}

  /** Hashes the file `path` opens (e.g. /proc/PID/exe); "" when it cannot be read. */
  hash(path: string): Promise<string> {
    let file: Deno.FsFile;
    let key: string;
    try {
      file = Deno.openSync(path, { read: true });
    } catch {
      return Promise.resolve("");
    }
    try {
      const st = file.statSync();
      // ctime too: a process can set mtime back after rewriting a file, not ctime.
      key = `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}:${st.ctime?.getTime()}`;
    } catch {
      file.close();
      return Promise.resolve("");
    }
    const hit = this.#cache.get(key) ?? this.#inflight.get(key);
    if (hit !== undefined) {
      file.close();
      return Promise.resolve(hit);
    }
    const pending = this.#digest(file).then((sha256) => {
      this.#inflight.delete(key);
      if (sha256 !== "") {
        if (this.#cache.size >= this.maxEntries) {
          this.#cache.delete(this.#cache.keys().next().value!);
        }
        this.#cache.set(key, sha256);
      }
      return sha256;
    });
    this.#inflight.set(key, pending);
    return pending;
  }

  async #digest(file: Deno.FsFile): Promise<string> {
    try {
      const { createHash } = await loadNodeCrypto();
      const h = createHash("sha256");
      const buf = new Uint8Array(1 << 20);
      for (;;) {
        const n = await file.read(buf);
        if (n === null) break;
        h.update(buf.subarray(0, n));
      }
      return h.digest("hex");
    } catch {
      return "";
    } finally {
      file.close();
    }
  }
}

/**
 * The process that owns the client end of an accepted loopback connection. Races (the
 * process exited, the socket closed) and ambiguity (holders running different executables)
 * give UNKNOWN_CALLER: a `binaries:` rule can then never match, so they fail closed.
 * Everything but reading the executable's bytes happens before this function first yields.
 */
export async function identifyCaller(
  client: Endpoint,
  server: Endpoint,
  hasher: ExeHasher,
  opts: {
    procRoot?: string;
    /** Finds the client socket faster than /proc/net/tcp (sock_diag); null: none. */
    socketOf?: (client: Endpoint, server: Endpoint) => SocketId | null;
    /** Search only processes of the socket's owner uid (many processes: the host's /proc). */
    sameUidOnly?: boolean;
  } = {},
): Promise<Caller> {
  const procRoot = opts.procRoot ?? "/proc";
  let socket: SocketId | null;
  try {
    socket = opts.socketOf ? opts.socketOf(client, server) : findSocket(client, server, procRoot);
  } catch {
    socket = findSocket(client, server, procRoot);
  }
  if (socket === null) return UNKNOWN_CALLER;
  const pids = socketHolders(socket.inode, procRoot, opts.sameUidOnly ? socket.uid : undefined);
  let found: { pid: number; exe: string; sha256: Promise<string> } | null = null;
  for (const pid of pids) {
    let exe: string;
    try {
      exe = Deno.readLinkSync(`${procRoot}/${pid}/exe`);
    } catch {
      continue; // exited, or a kernel thread
    }
    if (found && found.exe !== exe) {
      found.sha256.catch(() => {});
      return UNKNOWN_CALLER;
    }
    if (!found) found = { pid, exe, sha256: hasher.hash(`${procRoot}/${pid}/exe`) };
  }
  if (!found) return UNKNOWN_CALLER;
  const ancestors = ancestorsOf(found.pid, procRoot);
  return {
    pid: found.pid,
    exe: found.exe,
    sha256: await found.sha256,
    ...(ancestors.length > 0 ? { ancestors } : {}),
  };
}

/** The parent PID from /proc/PID/stat, or null. */
function parentOf(pid: number, procRoot: string): number | null {
  try {
    const stat = Deno.readTextFileSync(`${procRoot}/${pid}/stat`);
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return Number.isSafeInteger(ppid) ? ppid : null;
  } catch {
    return null;
  }
}

/**
 * Executables of `pid`'s parents, nearest first. Stops before PID 1 (the stage inside the
 * sandbox, init outside), at the first parent we may not inspect, and at the first parent
 * running clawcage itself (`self`: the stage and the supervisor; rootless, a root supervisor
 * could read them), so the chain names only the agent's own programs.
 */
export function ancestorsOf(pid: number, procRoot = "/proc", self = selfExe()): string[] {
  const out: string[] = [];
  let current = pid;
  while (out.length < MAX_ANCESTORS) {
    const parent = parentOf(current, procRoot);
    if (parent === null || parent <= 1) break;
    let exe: string;
    try {
      exe = Deno.readLinkSync(`${procRoot}/${parent}/exe`);
    } catch {
      break;
    }
    if (exe === self) break;
    out.push(exe);
    current = parent;
  }
  return out;
}

let cachedSelf: string | undefined;
function selfExe(): string {
  try {
    cachedSelf ??= Deno.realPathSync(Deno.execPath());
  } catch {
    cachedSelf = Deno.execPath();
  }
  return cachedSelf;
}

/** Longest caller line the proxy accepts, CRLF included. */
export const MAX_CALLER_LINE = 4096;

/** The line the bridge sends to the proxy before the client's bytes (unknown if too long). */
export function callerLine(caller: Caller): string {
  // An unknown caller has no pid field (the proxy accepts only positive pids).
  const line = (c: Caller) =>
    `CLAWCAGE-CALLER ${
      JSON.stringify(
        c.pid > 0
          ? {
            pid: c.pid,
            exe: c.exe,
            sha256: c.sha256,
            ...(c.ancestors?.length ? { ancestors: c.ancestors } : {}),
          }
          : { exe: "", sha256: "" },
      )
    }\r\n`;
  const fits = (text: string) => new TextEncoder().encode(text).length <= MAX_CALLER_LINE;
  // Too long: drop the farthest ancestors first; without any, an over-long path is unknown.
  let ancestors = caller.ancestors?.slice(0, MAX_ANCESTORS) ?? [];
  for (;;) {
    const text = line({ ...caller, ancestors });
    if (fits(text)) return text;
    if (ancestors.length === 0) return line(UNKNOWN_CALLER);
    ancestors = ancestors.slice(0, -1);
  }
}
