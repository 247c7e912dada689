// Reading a log back: a directory of segments or a single segment file, record by record.

import { basename } from "node:path";
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

/** Every parseable record at `path` in log order; unparseable and torn lines are skipped. */
export function* readRecords(path: string): Generator<LocatedRecord> {
  for (const f of logFiles(path).files) yield* readSegment(f);
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
