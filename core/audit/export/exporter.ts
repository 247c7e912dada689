// Export of audit records to a SIEM, apart from the local log: each target (syslog, OTLP) has its
// own bounded queue and sender loop that retries with exponential backoff. The local log never
// waits for export: enqueue() is O(1) and never fails; when a queue is full the oldest records
// in it are dropped, counted, and the count is recorded in the local log (an `audit.export`
// notice, at most once per notice interval per target), as are failures and recoveries.

import type { AuditExportPolicy } from "../../policy/audit_section.ts";
import type { AuditNotice } from "../events.ts";
import { otlpTarget } from "./otlp.ts";
import { syslogTarget } from "./syslog.ts";

export interface ExportTarget {
  /** `syslog udp://...`, `otlp http://...`. */
  name: string;
  /** Records per send(). */
  maxBatch: number;
  /** Delivers the batch or throws (the batch is retried; PermanentExportError: dropped). */
  send(lines: string[]): Promise<void>;
  close(): void;
}

/** The target refused the batch for good (e.g. HTTP 400): retrying would not help. */
export class PermanentExportError extends Error {}

/** The first `delivered` records of the batch got through, then sending failed. */
export class PartialExportError extends Error {
  constructor(readonly delivered: number, cause: unknown) {
    super((cause as Error)?.message ?? String(cause));
  }
}

export interface ExporterOptions {
  /** Records a notice in the local log (dropped records, failing, recovered). */
  onNotice: (notice: AuditNotice) => void;
  /** Targets to use instead of the policy's (tests). */
  targets?: ExportTarget[];
  /** First retry delay, doubled after each failure up to maxBackoffMs (default 100 / 30000). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How often dropped counts are recorded (default 1000 ms). */
  noticeMs?: number;
  /** A send() taking longer than this fails (default 10 s). */
  sendTimeoutMs?: number;
}

export interface TargetStats {
  name: string;
  queued: number;
  sent: number;
  dropped: number;
  failures: number;
  failing: boolean;
  lastError: string | null;
}

class TargetQueue {
  items: string[] = [];
  head = 0;
  /** Absolute index of items[head]: lets a finished send tell what is still queued. */
  first = 0;
  sent = 0;
  dropped = 0;
  droppedSinceNotice = 0;
  failures = 0;
  consecutive = 0;
  lastError: string | null = null;
  wake: (() => void) | null = null;
  loop: Promise<void> | null = null;
  constructor(readonly target: ExportTarget) {}
  get length(): number {
    return this.items.length - this.head;
  }
  shift(n: number): void {
    this.head += n;
    this.first += n;
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

export class Exporter {
  readonly #queues: TargetQueue[];
  readonly #max: number;
  readonly #opt: Required<Omit<ExporterOptions, "targets">>;
  readonly #noticeTimer: ReturnType<typeof setInterval>;
  #closed = false;
  #sleepers = new Set<() => void>();

  constructor(policy: AuditExportPolicy, options: ExporterOptions) {
    const targets = options.targets ?? [
      ...(policy.syslog ? [syslogTarget(policy.syslog)] : []),
      ...(policy.otlp ? [otlpTarget(policy.otlp)] : []),
    ];
    this.#max = policy.queue_max;
    this.#opt = {
      minBackoffMs: 100,
      maxBackoffMs: 30_000,
      noticeMs: 1000,
      sendTimeoutMs: 10_000,
      ...options,
    };
    this.#queues = targets.map((t) => new TargetQueue(t));
    for (const q of this.#queues) q.loop = this.#run(q);
    this.#noticeTimer = setInterval(() => this.#noticeDrops(), this.#opt.noticeMs);
    Deno.unrefTimer(Number(this.#noticeTimer));
  }

  /** Queues one record line for every target. Never blocks, never throws. */
  enqueue(line: string): void {
    if (this.#closed) return;
    for (const q of this.#queues) {
      if (q.length >= this.#max) {
        q.shift(1);
        q.dropped++;
        q.droppedSinceNotice++;
      }
      q.items.push(line);
      q.wake?.();
    }
  }

  stats(): TargetStats[] {
    return this.#queues.map((q) => ({
      name: q.target.name,
      queued: q.length,
      sent: q.sent,
      dropped: q.dropped,
      failures: q.failures,
      failing: q.consecutive > 0,
      lastError: q.lastError,
    }));
  }

  /** Waits until every queue is empty or `ms` passed; returns how many records are still queued. */
  async drain(ms: number): Promise<number> {
    const until = performance.now() + ms;
    this.#noticeDrops();
    while (performance.now() < until) {
      if (this.#queues.every((q) => q.length === 0)) return 0;
      // Retry now rather than after a long backoff.
      for (const wake of this.#sleepers) wake();
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.#queues.reduce((n, q) => n + q.length, 0);
  }

  /** Drains for up to `ms`, records what could not be delivered, then stops every sender. */
  async close(ms: number): Promise<void> {
    if (this.#closed) return;
    const left = await this.drain(ms);
    if (left > 0) {
      for (const q of this.#queues) {
        if (q.length === 0) continue;
        q.dropped += q.length;
        q.droppedSinceNotice += q.length;
      }
      this.#noticeDrops("not exported before shutdown");
    }
    this.#closed = true;
    clearInterval(this.#noticeTimer);
    for (const q of this.#queues) q.wake?.();
    for (const wake of this.#sleepers) wake();
    await Promise.all(this.#queues.map((q) => q.loop));
    for (const q of this.#queues) {
      try {
        q.target.close();
      } catch { /* closing anyway */ }
    }
  }

  #notice(q: TargetQueue, message: string, dropped?: number): void {
    try {
      this.#opt.onNotice({
        class: "audit",
        activity: "export",
        target: q.target.name,
        ...(dropped !== undefined ? { dropped } : {}),
        message,
      });
    } catch { /* the local log reports its own failures */ }
  }

  #noticeDrops(why = "dropped from the export queue"): void {
    for (const q of this.#queues) {
      if (q.droppedSinceNotice === 0) continue;
      const n = q.droppedSinceNotice;
      q.droppedSinceNotice = 0;
      this.#notice(q, `${n} records ${why} (queue_max ${this.#max})`, n);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#sleepers.add(done);
    });
  }

  async #run(q: TargetQueue): Promise<void> {
    while (!this.#closed) {
      if (q.length === 0) {
        await new Promise<void>((r) => (q.wake = r));
        q.wake = null;
        continue;
      }
      const start = q.first;
      const batch = q.items.slice(q.head, q.head + q.target.maxBatch);
      try {
        await this.#send(q.target, batch);
        q.sent += batch.length;
        if (q.consecutive > 0) {
          this.#notice(q, `export recovered after ${q.consecutive} failed attempts`);
        }
        q.consecutive = 0;
        q.lastError = null;
      } catch (e) {
        const msg = (e as Error)?.message ?? String(e);
        if (e instanceof PartialExportError && e.delivered > 0) {
          q.sent += e.delivered;
          const end = start + e.delivered;
          if (end > q.first) q.shift(end - q.first);
        }
        q.failures++;
        q.lastError = msg;
        if (e instanceof PermanentExportError) {
          q.dropped += batch.length;
          this.#notice(q, `${batch.length} records refused by the target: ${msg}`, batch.length);
        } else {
          if (q.consecutive === 0) this.#notice(q, `export failing (will retry): ${msg}`);
          q.consecutive++;
          const ceiling = Math.min(
            this.#opt.maxBackoffMs,
            this.#opt.minBackoffMs * 2 ** Math.min(q.consecutive - 1, 30),
          );
          await this.#sleep(ceiling / 2 + Math.random() * ceiling / 2);
          continue;
        }
      }
      // Remove what was delivered (or refused), unless overflow already dropped it.
      const end = start + batch.length;
      if (end > q.first) q.shift(end - q.first);
    }
  }

  async #send(t: ExportTarget, batch: string[]): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.#opt.sendTimeoutMs} ms`)),
        this.#opt.sendTimeoutMs,
      );
    });
    try {
      await Promise.race([t.send(batch), timeout]);
    } catch (e) {
      if (!(e instanceof PermanentExportError)) {
        try {
          t.close(); // a fresh connection next time
        } catch { /* already closed */ }
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }
}
