// The audit log writer: one per log directory (an exclusive lock), hash-chained JSON lines,
// periodic HMAC seals, batched durable writes, rotation that keeps the chain, retention.
//
// record() assigns the sequence number and the chain link at once (so the order is the order of
// calls) and queues the line; a single drain loop writes queued lines in batches and fsyncs as
// the policy says. When a write fails, the log enters a failed state: `healthy` turns false and
// every later record() or flush() throws AuditFailedError, so callers can fail closed.

import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { type FileLock, tryLockExclusive } from "../../ffi/flock.ts";
import { GENESIS, keyId, lineHash, recordLine, sealMac, sealSignature } from "./chain.ts";
import type { AnyEvent, AuditEvent, AuditRecord, TornTail } from "./events.ts";
import {
  loadOrCreateKey,
  loadOrCreateSigningKey,
  type SealedHead,
  type SigningKey,
  writeHead,
} from "./key.ts";
import {
  listSegments,
  LOCK_FILE,
  readFirstLine,
  readTail,
  segmentName,
  type SegmentRef,
  syncDir,
  writeAll,
} from "./segments.ts";
import { join } from "node:path";

/** When the writer calls fdatasync: after every record, at most every N ms, or never. */
export type FsyncPolicy = "always" | "none" | { intervalMs: number };

export interface AuditLogOptions {
  /** Directory for the sealing key and sealed heads (created 0700). Not the log directory. */
  keyDir: string;
  /** Default: batched, `{ intervalMs: 100 }`. */
  fsync?: FsyncPolicy;
  /** Seal after this many records (default 10000)... */
  sealEveryRecords?: number;
  /** ...or after this many ms with unsealed records (default 1000). */
  sealEveryMs?: number;
  /** Start a new segment when the current one reaches this size (default 64 MiB). */
  rotateBytes?: number;
  /** ...or this age (default 24 h). */
  rotateMs?: number;
  /** Keep at most this many segments (0: unlimited, the default). */
  maxFiles?: number;
  /** Remove segments last written longer ago than this (0: never, the default). */
  maxAgeMs?: number;
  /** Called once when the log fails. */
  onFailure?: (error: AuditFailedError) => void;
  /** Called with every line queued (events, seals, segment headers): for export. */
  onRecord?: (line: string, seq: number) => void;
  /** Wall clock for record times (ms since the epoch); default Date.now. Tests inject jumps. */
  clock?: () => number;
  /**
   * Backpressure: while more than this many bytes wait to be written (a producer that does not
   * yield to the event loop, a slow disk), record() throws AuditBusyError. Default 64 MiB.
   */
  maxQueuedBytes?: number;
}

/** The log cannot record any more: callers must stop the actions they would have recorded. */
export class AuditFailedError extends Error {}

/**
 * This record was not taken: too much is waiting to be written. The log is still healthy; the
 * caller must refuse the action (and may retry once the event loop has run).
 */
export class AuditBusyError extends Error {}

/** Opening the log failed (in use by another writer, bad key, unreadable tail). */
export class AuditOpenError extends Error {}

/** Opening the log failed because another writer holds it (one writer per log directory). */
export class AuditLockedError extends AuditOpenError {}

type ResolvedOptions =
  & Required<Omit<AuditLogOptions, "onFailure" | "onRecord">>
  & Pick<AuditLogOptions, "onFailure" | "onRecord">;

type Control =
  | { rotate: SegmentRef }
  | { head: SealedHead }
  | { remove: SegmentRef[] };
type Item = string | Control;

interface Tail {
  seq: number;
  hash: string;
  logId: string | null;
  torn: TornTail | null;
}

export class AuditLog {
  #queue: Item[] = [];
  #draining: Promise<void> | null = null;
  #scheduled = false;
  #failed: AuditFailedError | null = null;
  #closed = false;
  #file: Deno.FsFile | null = null;
  #lastSync = 0;
  #syncTimer: ReturnType<typeof setTimeout> | null = null;
  #sealTimer: ReturnType<typeof setInterval>;
  #unsynced = false;
  /** Bytes of lines queued and not yet handed to the file (for backpressure). */
  #queuedBytes = 0;

  #seq: number;
  #head: string;
  #sinceSeal = 0;
  #segment: SegmentRef;
  #segmentBytes = 0;
  /** Monotonic (performance.now): a wall-clock jump neither rotates early nor late. */
  #segmentOpened = performance.now();
  #segments: SegmentRef[];

  readonly dir: string;
  readonly logId: string;
  readonly keyId: string;
  readonly #key: Uint8Array;
  readonly #keyFile: string;
  readonly #signing: SigningKey;
  readonly #lock: FileLock;
  readonly #opt: ResolvedOptions;
  /** First record (seq, prev) of each segment this writer created, for retention records. */
  readonly #firsts = new Map<string, { seq: number; prev: string }>();

  private constructor(
    dir: string,
    opt: ResolvedOptions,
    key: { key: Uint8Array; path: string; signing: SigningKey },
    lock: FileLock,
    tail: Tail,
    segments: SegmentRef[],
    file: Deno.FsFile,
    segment: SegmentRef,
  ) {
    this.dir = dir;
    this.#opt = opt;
    this.#key = key.key;
    this.#keyFile = key.path;
    this.#signing = key.signing;
    this.keyId = keyId(key.key);
    this.#lock = lock;
    this.#seq = tail.seq;
    this.#head = tail.hash;
    this.logId = tail.logId ?? Buffer.from(randomBytes(8)).toString("hex");
    this.#segments = segments;
    this.#file = file;
    this.#segment = segment;
    const previous = segments.length > 1 ? segments[segments.length - 2].name : undefined;
    this.#firsts.set(segment.name, { seq: tail.seq + 1, prev: tail.hash });
    this.#append({
      class: "audit",
      activity: "segment",
      log_id: this.logId,
      segment: segment.name,
      ...(previous ? { previous_segment: previous } : {}),
      opened_because: "open",
      key_id: this.keyId,
      sig_key_id: this.#signing.id,
      ...(tail.torn ? { recovered: tail.torn } : {}),
    });
    this.#seal();
    this.#sealTimer = setInterval(() => {
      if (this.#sinceSeal > 0 && !this.#failed && !this.#closed) {
        this.#seal();
        this.#schedule();
      }
    }, opt.sealEveryMs);
    Deno.unrefTimer(Number(this.#sealTimer));
    this.#schedule();
  }

  /** Opens (creating) the log in `dir`; always starts a new segment linked to the last record. */
  static async open(dir: string, options: AuditLogOptions): Promise<AuditLog> {
    await Promise.resolve();
    const opt = {
      fsync: { intervalMs: 100 },
      sealEveryRecords: 10_000,
      sealEveryMs: 1000,
      rotateBytes: 64 << 20,
      rotateMs: 24 * 3600_000,
      maxFiles: 0,
      maxAgeMs: 0,
      clock: Date.now,
      maxQueuedBytes: 64 << 20,
      ...options,
    };
    const abs = resolve(dir);
    try {
      Deno.mkdirSync(abs, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new AuditOpenError(`cannot create audit log directory ${abs}: ${(e as Error).message}`);
    }
    let key;
    try {
      key = { ...loadOrCreateKey(opt.keyDir, abs), signing: loadOrCreateSigningKey(opt.keyDir) };
    } catch (e) {
      throw new AuditOpenError((e as Error).message);
    }
    let lock: FileLock | null;
    try {
      lock = tryLockExclusive(join(abs, LOCK_FILE));
    } catch (e) {
      throw new AuditOpenError(`cannot lock audit log ${abs}: ${(e as Error).message}`);
    }
    if (!lock) {
      throw new AuditLockedError(
        `audit log ${abs} is in use by another writer (${LOCK_FILE} is locked); only one writer may append`,
      );
    }
    try {
      const segments = listSegments(abs);
      const tail = findTail(segments);
      const ref = newSegmentRef(abs, segments);
      const file = createSegment(abs, ref);
      segments.push(ref);
      return new AuditLog(abs, opt, key, lock, tail, segments, file, ref);
    } catch (e) {
      lock.release();
      if (e instanceof AuditOpenError) throw e;
      throw new AuditOpenError(`cannot open audit log ${abs}: ${(e as Error).message}`);
    }
  }

  /** False once a write failed; every later record() throws. */
  get healthy(): boolean {
    return this.#failed === null && !this.#closed;
  }

  /** Why the log failed, or null. */
  get failure(): AuditFailedError | null {
    return this.#failed;
  }

  /** The sequence number of the last record queued. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Queues `event` and returns its sequence number. Fast: the write happens in the background in
   * a batch. Throws AuditFailedError when the log has failed or is closed. Durable once flush()
   * resolves (or, with a batched fsync policy, within its interval).
   */
  record(event: AuditEvent): number {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw new AuditFailedError(`audit log ${this.dir} is closed`);
    if (this.#queuedBytes >= this.#opt.maxQueuedBytes) {
      this.#schedule();
      throw new AuditBusyError(
        `audit log ${this.dir} cannot keep up: ${this.#queuedBytes} bytes wait to be written; ` +
          `record refused`,
      );
    }
    this.#maybeRotate();
    const seq = this.#append(event);
    if (this.#sinceSeal >= this.#opt.sealEveryRecords) this.#seal();
    this.#schedule();
    return seq;
  }

  /** Writes and fsyncs everything queued so far. Rejects with AuditFailedError on failure. */
  async flush(): Promise<void> {
    await this.#drain();
    if (this.#failed) throw this.#failed;
    await this.#sync();
    if (this.#failed) throw this.#failed;
  }

  /** Seals, flushes, closes the file and releases the lock. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (!this.#failed && this.#sinceSeal > 0) this.#seal();
    clearInterval(this.#sealTimer);
    try {
      await this.#drain();
      if (!this.#failed) await this.#sync();
    } finally {
      this.#closed = true;
      if (this.#syncTimer !== null) clearTimeout(this.#syncTimer);
      try {
        this.#file?.close();
      } catch { /* already failed */ }
      this.#file = null;
      this.#lock.release();
    }
    if (this.#failed) throw this.#failed;
  }

  // ---- chain -----------------------------------------------------------------------------

  #append(event: AnyEvent): number {
    const seq = ++this.#seq;
    const line = recordLine({ seq, time: this.#time(), prev: this.#head, event });
    this.#exported(line, seq);
    this.#head = lineHash(line);
    this.#queue.push(line);
    this.#queuedBytes += line.length + 1;
    this.#segmentBytes += line.length + 1;
    this.#sinceSeal++;
    return seq;
  }

  /** Hands a queued line to the export hook; export trouble never affects the local log. */
  #exported(line: string, seq: number): void {
    if (!this.#opt.onRecord) return;
    try {
      this.#opt.onRecord(line, seq);
    } catch { /* ignored */ }
  }

  #time(): string {
    const t = this.#opt.clock();
    return new Date(Number.isFinite(t) ? t : Date.now()).toISOString();
  }

  #seal(): void {
    const seq = this.#seq + 1;
    const time = this.#time();
    const rec: AuditRecord = {
      seq,
      time,
      prev: this.#head,
      event: {
        class: "audit",
        activity: "seal",
        alg: "HMAC-SHA256",
        key_id: this.keyId,
        head: this.#head,
        mac: sealMac(this.#key, this.logId, seq, time, this.#head),
        sig_alg: "Ed25519",
        sig_key_id: this.#signing.id,
        sig: sealSignature(this.#signing.privateKey, this.logId, seq, time, this.#head),
      },
    };
    const line = recordLine(rec);
    this.#exported(line, seq);
    this.#seq = seq;
    this.#head = lineHash(line);
    this.#queue.push(line);
    this.#queuedBytes += line.length + 1;
    this.#segmentBytes += line.length + 1;
    this.#sinceSeal = 0;
    this.#queue.push({ head: { log_id: this.logId, seq, hash: this.#head, time } });
  }

  #maybeRotate(): void {
    const big = this.#segmentBytes >= this.#opt.rotateBytes;
    const old = performance.now() - this.#segmentOpened >= this.#opt.rotateMs;
    if (!big && !old) return;
    this.#seal();
    const previous = this.#segment;
    const ref = newSegmentRef(this.dir, this.#segments);
    this.#segments.push(ref);
    this.#segment = ref;
    this.#segmentBytes = 0;
    this.#segmentOpened = performance.now();
    this.#queue.push({ rotate: ref });
    const headerSeq = this.#seq + 1;
    const headerPrev = this.#head;
    this.#firsts.set(ref.name, { seq: headerSeq, prev: headerPrev });
    this.#append({
      class: "audit",
      activity: "segment",
      log_id: this.logId,
      segment: ref.name,
      previous_segment: previous.name,
      opened_because: "rotate",
      key_id: this.keyId,
      sig_key_id: this.#signing.id,
    });
    this.#retention({ segment: ref.name, seq: headerSeq, prev: headerPrev });
  }

  /** Drops the oldest segments beyond maxFiles / maxAgeMs, recording which in the chain. */
  #retention(newest: { segment: string; seq: number; prev: string }): void {
    const { maxFiles, maxAgeMs } = this.#opt;
    if (maxFiles <= 0 && maxAgeMs <= 0) return;
    const segs = this.#segments;
    let drop = 0;
    const now = this.#opt.clock();
    while (drop < segs.length - 1) {
      const tooMany = maxFiles > 0 && segs.length - drop > maxFiles;
      let tooOld = false;
      if (!tooMany && maxAgeMs > 0) {
        try {
          const m = Deno.statSync(segs[drop].path).mtime?.getTime() ?? now;
          tooOld = now - m > maxAgeMs;
        } catch {
          tooOld = false;
        }
      }
      if (!tooMany && !tooOld) break;
      drop++;
    }
    if (drop === 0) return;
    // The first record kept: the first line of the oldest kept segment that has one.
    let keptFrom = newest;
    for (let i = drop; i < segs.length - 1; i++) {
      const first = this.#firsts.get(segs[i].name) ?? safeFirstRecord(segs[i].path);
      if (first) {
        keptFrom = { segment: segs[i].name, seq: first.seq, prev: first.prev };
        break;
      }
    }
    const removed = segs.splice(0, drop);
    for (const r of removed) this.#firsts.delete(r.name);
    this.#append({
      class: "audit",
      activity: "retention",
      removed: removed.map((s) => s.name),
      kept_from: keptFrom,
    });
    this.#queue.push({ remove: removed });
  }

  // ---- writing ---------------------------------------------------------------------------

  #schedule(): void {
    if (this.#draining || this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      this.#drain();
    }, 0);
  }

  #drain(): Promise<void> {
    if (this.#draining) return this.#draining;
    if (this.#queue.length === 0 || this.#failed) return Promise.resolve();
    this.#draining = (async () => {
      try {
        while (this.#queue.length > 0 && !this.#failed) {
          const items = this.#queue;
          this.#queue = [];
          this.#queuedBytes = 0;
          let batch: string[] = [];
          for (const item of items) {
            if (typeof item === "string") {
              batch.push(item);
              if (this.#opt.fsync === "always") {
                await this.#write(batch);
                batch = [];
                await this.#sync();
              }
              continue;
            }
            await this.#write(batch);
            batch = [];
            await this.#control(item);
          }
          await this.#write(batch);
          this.#syncPerPolicy();
        }
      } catch (e) {
        this.#fail(e);
      } finally {
        this.#draining = null;
      }
      if (this.#queue.length > 0 && !this.#failed) this.#schedule();
    })();
    return this.#draining;
  }

  async #write(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    if (!this.#file) throw new Error("segment file is not open");
    await writeAll(this.#file, new TextEncoder().encode(lines.join("\n") + "\n"));
    this.#unsynced = true;
  }

  async #control(c: Control): Promise<void> {
    if ("head" in c) {
      // The sealed head may only name a seal that is already on disk.
      await this.#sync();
      writeHead(this.#keyFile, c.head, this.#opt.fsync !== "none");
    } else if ("rotate" in c) {
      await this.#sync();
      this.#file?.close();
      this.#file = null;
      this.#file = createSegment(this.dir, c.rotate);
    } else {
      await this.#sync();
      for (const s of c.remove) {
        try {
          Deno.removeSync(s.path);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
      syncDir(this.dir);
    }
  }

  async #sync(): Promise<void> {
    if (!this.#unsynced || !this.#file || this.#opt.fsync === "none") return;
    this.#unsynced = false;
    this.#lastSync = performance.now();
    try {
      await this.#file.syncData();
    } catch (e) {
      this.#fail(e);
    }
  }

  #syncPerPolicy(): void {
    const p = this.#opt.fsync;
    if (p === "none" || p === "always" || !this.#unsynced) return;
    const due = this.#lastSync + p.intervalMs - performance.now();
    if (due <= 0) {
      this.#sync();
    } else if (this.#syncTimer === null) {
      this.#syncTimer = setTimeout(() => {
        this.#syncTimer = null;
        if (!this.#closed && !this.#draining) this.#sync();
        else this.#syncPerPolicy();
      }, due);
    }
  }

  #fail(e: unknown): void {
    if (this.#failed) return;
    const pending = this.#queue.filter((i) => typeof i === "string").length;
    this.#failed = new AuditFailedError(
      `audit log ${this.dir} cannot write (${(e as Error)?.message ?? e}); ` +
        `it refuses further records${pending ? ` (${pending} queued records not written)` : ""}`,
    );
    this.#queue = [];
    try {
      this.#opt.onFailure?.(this.#failed);
    } catch { /* the callback's own trouble does not change the state */ }
  }
}

// ---- helpers -----------------------------------------------------------------------------

function newSegmentRef(dir: string, segments: SegmentRef[]): SegmentRef {
  const index = (segments.at(-1)?.index ?? 0) + 1;
  const name = segmentName(index);
  return { name, index, path: join(dir, name) };
}

function createSegment(dir: string, ref: SegmentRef): Deno.FsFile {
  const f = Deno.openSync(ref.path, { write: true, append: true, createNew: true, mode: 0o600 });
  syncDir(dir);
  return f;
}

function safeFirstRecord(path: string): AuditRecord | null {
  try {
    const line = readFirstLine(path);
    return line ? JSON.parse(new TextDecoder().decode(line)) as AuditRecord : null;
  } catch {
    return null;
  }
}

/** The last complete record of the log and the torn bytes after it, if any. */
function findTail(segments: SegmentRef[]): Tail {
  let torn: TornTail | null = null;
  for (let i = segments.length - 1; i >= 0; i--) {
    const s = segments[i];
    const t = readTail(s.path);
    if (t.tornBytes > 0 && torn === null) {
      torn = { file: s.name, good_bytes: t.goodBytes, torn_bytes: t.tornBytes };
    }
    if (!t.lastLine) continue;
    let rec: AuditRecord;
    try {
      rec = JSON.parse(new TextDecoder().decode(t.lastLine));
    } catch {
      throw new AuditOpenError(
        `the last complete line of ${s.path} is not an audit record; run \`clawcage audit verify\``,
      );
    }
    if (typeof rec?.seq !== "number") {
      throw new AuditOpenError(
        `the last line of ${s.path} has no seq; run \`clawcage audit verify\``,
      );
    }
    const first = safeFirstRecord(s.path);
    const logId = first?.event?.class === "audit" && first.event.activity === "segment"
      ? first.event.log_id
      : null;
    return { seq: rec.seq, hash: lineHash(t.lastLine), logId, torn };
  }
  return { seq: 0, hash: GENESIS, logId: null, torn };
}
