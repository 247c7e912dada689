// Execs inside the sandbox, from the kernel's process events connector (root): every program
// image started by a process of the sandbox becomes a `process.exec` event. The sandbox's
// processes are followed by their fork events from the supervisor's child down, so a process
// that has already exited when its exec is read is still attributed; its program and arguments
// are read from /proc at that moment and are missing when it is already gone.

import { ProcConnector, type ProcEvent } from "../../ffi/proc_connector.ts";
import { isDescendant } from "../sandbox/agent_status.ts";
import type { ProcessActivity } from "./events.ts";

export interface ExecWatchOptions {
  onExec: (event: ProcessActivity) => void;
  /** The kernel dropped process events (its socket buffer overflowed): some execs are missing. */
  onLost: () => void;
  pollMs?: number;
}

function read(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** What /proc still says about `pid` (nothing once it has exited). */
function describe(pid: number): ProcessActivity["process"] {
  const p: ProcessActivity["process"] = { pid };
  try {
    p.exe = Deno.readLinkSync(`/proc/${pid}/exe`);
  } catch { /* gone, or not readable */ }
  const cmdline = read(`/proc/${pid}/cmdline`);
  if (cmdline) p.argv = cmdline.replace(/\0$/, "").split("\0");
  const status = read(`/proc/${pid}/status`);
  const uid = status?.match(/^Uid:\s+(\d+)/m)?.[1];
  if (uid !== undefined) p.uid = Number(uid);
  const ns = status?.match(/^NSpid:\s*(.*)$/m)?.[1].trim().split(/\s+/).map(Number);
  if (ns && ns.length > 1) p.ns_pid = ns.at(-1);
  return p;
}

export class ExecWatcher {
  readonly #pc: ProcConnector;
  readonly #opt: ExecWatchOptions;
  /** Thread-group ids of the sandbox's processes (and of the supervisor's child). */
  readonly #members = new Set<number>();
  /** Processes of clawcage itself: the supervisor's child and the stage. */
  readonly #own = new Set<number>();
  #root: number | null = null;
  #stageIsChild = false;
  /** Execs recorded so far. */
  count = 0;

  #stopped = false;
  #loop: Promise<void> = Promise.resolve();

  private constructor(pc: ProcConnector, opt: ExecWatchOptions) {
    this.#pc = pc;
    this.#opt = opt;
  }

  /** Reads events as soon as they arrive (poll(2) on a worker thread), while /proc has them. */
  async #run(): Promise<void> {
    while (!this.#stopped) {
      await this.#pc.wait(this.#opt.pollMs ?? 25);
      if (!this.#stopped) this.poll();
    }
  }

  /** Starts listening (before the sandbox starts); throws ProcConnectorError. */
  static start(opt: ExecWatchOptions): ExecWatcher {
    const w = new ExecWatcher(ProcConnector.open(), opt);
    w.#loop = w.#run();
    return w;
  }

  /**
   * The supervisor's child: it and the stage are clawcage's own processes; everything they
   * start is the sandbox's. `stageIsChild`: the stage is the child's first child (namespaces,
   * where unshare(1) forks it); otherwise the child is the stage itself.
   */
  adopt(root: number, stageIsChild: boolean): void {
    this.#root = root;
    this.#stageIsChild = stageIsChild;
    this.#members.add(root);
    this.#own.add(root);
  }

  poll(): void {
    let events: ProcEvent[];
    try {
      events = this.#pc.receive();
    } catch {
      return;
    }
    for (const e of events) this.#handle(e);
  }

  #isMember(tgid: number): boolean {
    if (this.#members.has(tgid)) return true;
    // Forked before adopt() was called: fall back to the parent chain while it exists.
    if (this.#root !== null && isDescendant(tgid, this.#root)) {
      this.#members.add(tgid);
      return true;
    }
    return false;
  }

  #handle(e: ProcEvent): void {
    if (e.what === "lost") {
      this.#opt.onLost();
      return;
    }
    if (this.#root === null) return;
    if (e.what === "fork") {
      if (e.childPid !== e.childTgid || !this.#members.has(e.parentTgid)) return;
      this.#members.add(e.childTgid);
      if (this.#stageIsChild && e.parentTgid === this.#root && this.#own.size === 1) {
        this.#own.add(e.childTgid);
      }
      return;
    }
    if (e.what === "exit") {
      if (e.pid === e.tgid && !this.#own.has(e.tgid)) this.#members.delete(e.tgid);
      return;
    }
    if (e.pid !== e.tgid || this.#own.has(e.tgid) || !this.#isMember(e.tgid)) return;
    this.count++;
    this.#opt.onExec({ class: "process", activity: "exec", process: describe(e.tgid) });
  }

  /** Reads what is still queued and stops. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#loop;
    this.poll();
    this.#pc.close();
  }
}
