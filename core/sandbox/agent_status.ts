// How the supervisor learns what happens to the agent inside the stage: the agent's pid when it
// starts and its exit code or signal when it ends (the stage's own exit status folds a signal N
// into 128+N, which an agent could also exit with).
//
// The supervisor creates an empty file in a private directory (0700) and opens it for reading;
// the stage opens it for appending before it builds the sandbox and unlinks it at once, so no
// path to it exists while the agent runs. The stage appends one JSON line per event.
// Also here: the process-tree kill the supervisor uses to stop a sandbox at once (fail closed).

import * as libc from "../../ffi/libc.ts";

export type StageReport =
  | { agent: "start"; pid: number }
  | { agent: "exit"; pid: number; code: number | null; signal: number | null };

// ---- stage side --------------------------------------------------------------------------

export class StatusWriter {
  #file: Deno.FsFile | null;
  constructor(path: string | undefined) {
    this.#file = null;
    if (!path) return;
    this.#file = Deno.openSync(path, { append: true });
    Deno.removeSync(path);
  }
  report(r: StageReport): void {
    if (!this.#file) return;
    try {
      this.#file.writeSync(new TextEncoder().encode(JSON.stringify(r) + "\n"));
    } catch { /* the supervisor is gone; nothing to tell */ }
  }
}

// ---- supervisor side ---------------------------------------------------------------------

export class StatusReader {
  readonly path: string;
  readonly #dir: string;
  readonly #file: Deno.FsFile;
  #buffer = "";

  constructor() {
    this.#dir = Deno.makeTempDirSync({ prefix: "clawcage-status-" });
    Deno.chmodSync(this.#dir, 0o700);
    this.path = `${this.#dir}/stage`;
    Deno.writeFileSync(this.path, new Uint8Array(), { mode: 0o600 });
    this.#file = Deno.openSync(this.path, { read: true });
  }

  /** Reports appended since the last call. */
  read(): StageReport[] {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = this.#file.readSync(buf);
      if (n === null || n === 0) break;
      this.#buffer += new TextDecoder().decode(buf.subarray(0, n));
    }
    const out: StageReport[] = [];
    let nl: number;
    while ((nl = this.#buffer.indexOf("\n")) !== -1) {
      const line = this.#buffer.slice(0, nl);
      this.#buffer = this.#buffer.slice(nl + 1);
      try {
        out.push(JSON.parse(line));
      } catch { /* not ours */ }
    }
    return out;
  }

  close(): void {
    this.#file.close();
    Deno.removeSync(this.#dir, { recursive: true });
  }
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** The direct children of `pid` (all its threads). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: Deno.DirEntry[] = [];
  try {
    tasks = [...Deno.readDirSync(`/proc/${pid}/task`)];
  } catch {
    return out;
  }
  for (const t of tasks) {
    const text = readText(`/proc/${pid}/task/${t.name}/children`);
    if (text) out.push(...text.split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** The host pid of the child of `parent` whose pid in its own PID namespace is `nsPid`. */
export function hostPidOf(parent: number, nsPid: number): number | null {
  for (const c of childrenOf(parent)) {
    const ns = readText(`/proc/${c}/status`)?.match(/^NSpid:\s*(.*)$/m)?.[1].trim().split(/\s+/);
    if (ns && Number(ns.at(-1)) === nsPid) return c;
  }
  return null;
}

/** True when `pid` is `ancestor` or one of its descendants (by the parent chain in /proc). */
export function isDescendant(pid: number, ancestor: number): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    if (p === ancestor) return true;
    const stat = readText(`/proc/${p}/stat`);
    if (!stat) return false;
    // pid (comm) state ppid ...: comm may contain spaces and parentheses.
    p = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  }
  return false;
}

/** SIGKILLs `root` and every descendant, deepest first, a few rounds to catch late forks. */
export function killTree(root: number): void {
  for (let round = 0; round < 5; round++) {
    const all: number[] = [];
    const walk = (p: number) => {
      for (const c of childrenOf(p)) walk(c);
      all.push(p);
    };
    walk(root);
    let alive = 0;
    for (const p of all) {
      try {
        libc.kill(p, 9);
        alive++;
      } catch { /* gone */ }
    }
    if (alive === 0) return;
  }
}
