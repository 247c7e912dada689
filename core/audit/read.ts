// Reading a log back: a directory of segments or a single segment file, record by record.

import { basename, join } from "node:path";
import type { AuditRecord } from "./events.ts";
import { listSegments, type SegmentRef, splitLines } from "./segments.ts";

export class AuditReadError extends Error {}

/** The segment files at `path` (a log directory, or one segment file), oldest first. */
export function logFiles(path: string): { files: SegmentRef[]; single: boolean } {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (e) {
    throw new AuditReadError(`cannot read audit log ${path}: ${(e as Error).message}`);
  }
  if (info.isFile) return { files: [{ name: basename(path), index: 0, path }], single: true };
  try {
    return { files: listSegments(path), single: false };
  } catch (e) {
    throw new AuditReadError(`cannot list audit log ${path}: ${(e as Error).message}`);
  }
}

export interface LocatedRecord {
  file: string;
  line: number;
  record: AuditRecord;
}

const decoder = new TextDecoder();

/**
 * The logs at `path`: one segment file (itself), a log directory, and the logs in its
 * subdirectories, one per writer (e.g. one per agent of `clawcage service`). The default audit
 * directory can be both: `clawcage run`'s log, with the service's agents' logs below it. A
 * directory that is a log comes first.
 */
export function logsAt(path: string): string[] {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (e) {
    throw new AuditReadError(`cannot read audit log ${path}: ${(e as Error).message}`);
  }
  if (!info.isDirectory) return [path];
  try {
    const own = listSegments(path).length > 0;
    const subs: string[] = [];
    for (const e of Deno.readDirSync(path)) {
      if (e.isDirectory && listSegments(join(path, e.name)).length > 0) {
        subs.push(join(path, e.name));
      }
    }
    return own || subs.length === 0 ? [path, ...subs.sort()] : subs.sort();
  } catch (e) {
    throw new AuditReadError(`cannot list audit log ${path}: ${(e as Error).message}`);
  }
}

/**
 * Every parseable record at `path` in log order; unparseable and torn lines are skipped. Several
 * logs (see logsAt) are merged by record time; `file` then names the log's directory too.
 */
export function* readRecords(path: string): Generator<LocatedRecord> {
  const logs = logsAt(path);
  if (logs.length === 1) {
    for (const f of logFiles(logs[0]).files) yield* readSegment(f);
    return;
  }
  const heads = logs.map((dir) => {
    const it = (function* () {
      for (const f of logFiles(dir).files) {
        for (const r of readSegment(f)) yield { ...r, file: `${basename(dir)}/${r.file}` };
      }
    })();
    return { it, next: it.next() };
  });
  for (;;) {
    let best: (typeof heads)[number] | null = null;
    for (const h of heads) {
      if (h.next.done) continue;
      if (!best || h.next.value.record.time < best.next.value!.record.time) best = h;
    }
    if (!best || best.next.done) return;
    yield best.next.value;
    best.next = best.it.next();
  }
}

export function* readSegment(f: SegmentRef, fromByte = 0): Generator<LocatedRecord> {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(f.path);
  } catch (e) {
    throw new AuditReadError(`cannot read ${f.path}: ${(e as Error).message}`);
  }
  const { lines } = splitLines(bytes.subarray(fromByte));
  for (let i = 0; i < lines.length; i++) {
    const record = parseRecord(lines[i]);
    if (record) yield { file: f.name, line: i + 1, record };
  }
}

/** A record if `line` is one (shape checked), else null. */
export function parseRecord(line: Uint8Array): AuditRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(line));
  } catch {
    return null;
  }
  return isRecord(v) ? v : null;
}

export function isRecord(v: unknown): v is AuditRecord {
  const r = v as AuditRecord;
  return typeof r === "object" && r !== null && Number.isSafeInteger(r.seq) && r.seq > 0 &&
    typeof r.time === "string" && typeof r.prev === "string" && /^[0-9a-f]{64}$/.test(r.prev) &&
    typeof r.event === "object" && r.event !== null && typeof r.event.class === "string" &&
    typeof r.event.activity === "string";
}

/** The log id named by the first segment header of the log at `path`, or null. */
export function logIdOf(path: string): string | null {
  const first = logFiles(path).files[0];
  if (!first) return null;
  for (const { record } of readSegment(first)) {
    const e = record.event;
    return e.class === "audit" && e.activity === "segment" ? e.log_id : null;
  }
  return null;
}
