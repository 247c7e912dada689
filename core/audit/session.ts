// The audit trail of one supervisor run: the writer, the sandbox's identity on every event, the
// kernel Landlock denial reader, the export queue. `Recorder` is what other parts of the
// supervisor (egress proxy, privacy router) record through: it never throws, and tells them when
// a record could not be made so they deny the action it describes (fail closed).

import type { AuditEvent, FileActivity } from "./events.ts";
import { DenialReaderError, LandlockDenialReader } from "./landlock_denials.ts";
import { ExecWatcher } from "./exec_events.ts";
import type { AuditSettings } from "./settings.ts";
import { AuditBusyError, AuditFailedError, AuditLog } from "./writer.ts";
import { Exporter } from "./export/exporter.ts";

export interface Recorder {
  /** The sandbox id put on every event that has none. */
  readonly sandbox: string;
  /** False once nothing more can be recorded: deny every action that needs a record. */
  readonly healthy: boolean;
  /**
   * Queues `event` (written within the fsync interval). Returns false when it cannot be
   * recorded: the caller must then refuse the action. Never throws.
   */
  record(event: AuditEvent): boolean;
  /** Records `event` and resolves once it is on disk; false when it could not be. */
  recordDurable(event: AuditEvent): Promise<boolean>;
}

/** For `--no-audit` / `audit.enabled: false`: nothing is recorded, nothing is refused. */
export class NoRecorder implements Recorder {
  readonly healthy = true;
  constructor(readonly sandbox: string) {}
  record(): boolean {
    return true;
  }
  recordDurable(): Promise<boolean> {
    return Promise.resolve(true);
  }
}

export interface SessionOptions {
  sandbox: string;
  /** Called once, with the reason, when the log can no longer record. */
  onFailure: (reason: string) => void;
}

export class AuditSession implements Recorder {
  readonly sandbox: string;
  readonly log: AuditLog;
  readonly #exporter: Exporter | null;
  #denials: LandlockDenialReader | null = null;
  /** Records refused for backpressure since the last notice. */
  #busyRefused = 0;
  #execs: ExecWatcher | null = null;

  private constructor(log: AuditLog, sandbox: string, exporter: Exporter | null) {
    this.log = log;
    this.sandbox = sandbox;
    this.#exporter = exporter;
  }

  /** Opens the log; throws AuditOpenError (with the reason) when it cannot. */
  static async open(settings: AuditSettings, opt: SessionOptions): Promise<AuditSession> {
    let session: AuditSession | null = null;
    const exporter = settings.export
      ? new Exporter(settings.export, {
        onNotice: (n) => session?.record(n),
      })
      : null;
    try {
      const log = await AuditLog.open(settings.dir, {
        ...settings.writer,
        keyDir: settings.keyDir,
        onFailure: (e) => opt.onFailure(e.message),
        ...(exporter ? { onRecord: (line: string) => exporter.enqueue(line) } : {}),
      });
      session = new AuditSession(log, opt.sandbox, exporter);
      return session;
    } catch (e) {
      await exporter?.close(0);
      throw e;
    }
  }

  get healthy(): boolean {
    return this.log.healthy;
  }

  /** Why the log failed, or null. */
  get failure(): string | null {
    return this.log.failure?.message ?? null;
  }

  record(event: AuditEvent): boolean {
    try {
      if (this.#busyRefused > 0) {
        this.log.record({
          class: "audit",
          activity: "notice",
          message: `${this.#busyRefused} records refused while the writer could not keep up ` +
            `(the actions they describe were refused)`,
        });
        this.#busyRefused = 0;
      }
      this.log.record(
        "sandbox" in event || event.class === "audit" ? event : { ...event, sandbox: this.sandbox },
      );
      return true;
    } catch (e) {
      if (e instanceof AuditBusyError) {
        this.#busyRefused++;
        return false;
      }
      if (e instanceof AuditFailedError) return false;
      throw e;
    }
  }

  async recordDurable(event: AuditEvent): Promise<boolean> {
    if (!this.record(event)) return false;
    try {
      await this.log.flush();
      return true;
    } catch (e) {
      if (e instanceof AuditFailedError) return false;
      throw e;
    }
  }

  /** Everything recorded so far is on disk; throws AuditFailedError otherwise. */
  flush(): Promise<void> {
    return this.log.flush();
  }

  /**
   * Starts recording kernel Landlock denials of processes for which `owns(pid)` is true (the pid
   * that created the Landlock domain). Returns null when reading, or why not (also recorded).
   */
  async startKernelDenials(
    mode: AuditSettings["kernelDenials"],
    owns: (pid: number) => boolean,
  ): Promise<string | null> {
    if (mode === "off") return null;
    let why: string;
    if (Deno.uid() !== 0) {
      why = "kernel Landlock denials are not recorded: reading kernel audit records needs root";
    } else {
      try {
        this.#denials = await LandlockDenialReader.start({
          enableAudit: mode === "enable",
          sandboxForPid: (pid) => (owns(pid) ? this.sandbox : undefined),
          onDenial: (e: FileActivity) => {
            // Other sandboxes' (and other programs') Landlock denials are not ours to record.
            if (e.sandbox === this.sandbox) this.record(e);
          },
        });
        return null;
      } catch (e) {
        if (!(e instanceof DenialReaderError)) throw e;
        why = `kernel Landlock denials are not recorded: ${e.message}`;
      }
    }
    this.record({ class: "audit", activity: "notice", message: why });
    return why;
  }

  /**
   * Starts recording execs inside the sandbox (root: the kernel's process events connector);
   * call adoptSandbox() once the sandbox's first process exists. Returns null when recording,
   * or why not (also recorded).
   */
  startExecEvents(): string | null {
    let why: string;
    if (Deno.uid() !== 0) {
      why = "execs inside the sandbox are not recorded: the kernel's process events need root";
    } else {
      try {
        let lostNoticed = false;
        this.#execs = ExecWatcher.start({
          onExec: (e) => this.record(e),
          onLost: () => {
            if (lostNoticed) return;
            lostNoticed = true;
            this.record({
              class: "audit",
              activity: "notice",
              message: "the kernel dropped process events: some execs are not recorded",
            });
          },
        });
        return null;
      } catch (e) {
        why = `execs inside the sandbox are not recorded: ${(e as Error).message}`;
      }
    }
    this.record({ class: "audit", activity: "notice", message: why });
    return why;
  }

  /** The supervisor's child process (see ExecWatcher.adopt). */
  adoptSandbox(root: number, stageIsChild: boolean): void {
    this.#execs?.adopt(root, stageIsChild);
  }

  /** Reads the process events still queued and stops. */
  async stopExecEvents(): Promise<void> {
    const w = this.#execs;
    this.#execs = null;
    await w?.stop();
  }

  /** Reads what the kernel still has queued and stops reading denials. */
  async stopKernelDenials(): Promise<void> {
    try {
      await this.#denials?.stop();
    } catch { /* the reader's trouble must not keep the log open */ }
    this.#denials = null;
  }

  /** Stops the denial reader and the export, seals and closes. Throws AuditFailedError. */
  async close(exportDrainMs = 2000): Promise<void> {
    await this.stopExecEvents();
    await this.stopKernelDenials();
    // Export drains while the log is open, so what it could not deliver is recorded locally.
    try {
      await this.#exporter?.close(exportDrainMs);
    } finally {
      await this.log.close();
    }
  }

  /** Per-target export counters (empty without export). */
  exportStats() {
    return this.#exporter?.stats() ?? [];
  }
}
