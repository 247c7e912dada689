// Segment files of a log directory: naming, listing, and reading lines back. A log is a
// directory of `audit-NNNNNN.jsonl` files; the chain runs through them in index order.

import { join } from "node:path";

export const LOCK_FILE = "audit.lock";
const SEGMENT_RE = /^audit-(\d{6,})\.jsonl$/;

export function segmentName(index: number): string {
  return `audit-${String(index).padStart(6, "0")}.jsonl`;
}

export interface SegmentRef {
  name: string;
  index: number;
  path: string;
}

/** The segments of `dir`, oldest first. */
export function listSegments(dir: string): SegmentRef[] {
  const out: SegmentRef[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const m = e.isFile ? SEGMENT_RE.exec(e.name) : null;
    if (m) out.push({ name: e.name, index: Number(m[1]), path: join(dir, e.name) });
  }
  return out.sort((a, b) => a.index - b.index);
}

export interface SplitLines {
  /** Complete lines (without their newline), with their 1-based line numbers. */
  lines: Uint8Array[];
  /** Bytes up to and including the last newline. */
  goodBytes: number;
  /** Bytes after the last newline: a torn (partially written) line when > 0. */
  tornBytes: number;
}

/** Splits a segment's bytes into complete lines and a possibly torn remainder. */
export function splitLines(bytes: Uint8Array): SplitLines {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (;;) {
    const nl = bytes.indexOf(10, start);
    if (nl < 0) break;
    lines.push(bytes.subarray(start, nl));
    start = nl + 1;
  }
  return { lines, goodBytes: start, tornBytes: bytes.length - start };
}

export interface SegmentTail {
  size: number;
  goodBytes: number;
  tornBytes: number;
  /** The last complete line, if any. */
  lastLine: Uint8Array | null;
}

/** Reads only the end of a segment: its last complete line and whether a torn line follows. */
export function readTail(path: string): SegmentTail {
  const f = Deno.openSync(path, { read: true });
  try {
    const size = f.statSync().size;
    let chunk = 1 << 16;
    for (;;) {
      const from = Math.max(0, size - chunk);
      const buf = new Uint8Array(size - from);
      f.seekSync(from, Deno.SeekMode.Start);
      readFull(f, buf);
      const lastNl = buf.lastIndexOf(10);
      if (lastNl < 0 && from > 0) {
        chunk *= 4;
        continue;
      }
      if (lastNl < 0) return { size, goodBytes: 0, tornBytes: size, lastLine: null };
      const prevNl = buf.lastIndexOf(10, lastNl - 1);
      if (prevNl < 0 && from > 0) {
        chunk *= 4;
        continue;
      }
      const goodBytes = from + lastNl + 1;
      return {
        size,
        goodBytes,
        tornBytes: size - goodBytes,
        lastLine: buf.slice(prevNl + 1, lastNl),
      };
    }
  } finally {
    f.close();
  }
}

/** The first complete line of a segment, or null when it has none. */
export function readFirstLine(path: string): Uint8Array | null {
  const f = Deno.openSync(path, { read: true });
  try {
    let buf = new Uint8Array(1 << 14);
    let have = 0;
    for (;;) {
      const nl = buf.subarray(0, have).indexOf(10);
      if (nl >= 0) return buf.slice(0, nl);
      if (have === buf.length) {
        const bigger = new Uint8Array(buf.length * 4);
        bigger.set(buf);
        buf = bigger;
      }
      const n = f.readSync(buf.subarray(have));
      if (n === null || n === 0) return null;
      have += n;
    }
  } finally {
    f.close();
  }
}

function readFull(f: Deno.FsFile, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) {
    const n = f.readSync(buf.subarray(off));
    if (n === null || n === 0) throw new Error("file shrank while reading");
    off += n;
  }
}

export function writeAllSync(f: Deno.FsFile, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += f.writeSync(bytes.subarray(off));
}

export async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await f.write(bytes.subarray(off));
}

/** fsync a directory so that a file created or removed in it survives a crash. */
export function syncDir(dir: string): void {
  const d = Deno.openSync(dir, { read: true });
  try {
    d.syncSync();
  } finally {
    d.close();
  }
}
