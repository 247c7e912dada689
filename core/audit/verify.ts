// Verification of a log: every record's link to the previous one, sequence numbers, seals (with
// the key), torn lines, the start of the log (genesis or a recorded retention), and, with the
// key, the sealed head kept in the key directory (which catches a log cut back to an earlier
// seal). Stops at the first broken record and says where it is.

import { GENESIS, keyId, lineHash, sealMacValid, sealSignatureValid } from "./chain.ts";
import type { AuditRecord } from "./events.ts";
import { headPath, readHead, readKey, readPublicKey } from "./key.ts";
import { AuditReadError, isRecord, logFiles } from "./read.ts";
import { splitLines } from "./segments.ts";

export type ProblemKind =
  | "malformed" // a line that is not a record
  | "edited" // a record whose hash is not what the next record links to
  | "sequence" // a sequence number out of order: records removed, inserted or reordered
  | "segment" // a segment header that does not belong where it is
  | "seal" // a seal whose MAC, key or head does not check out
  | "torn" // a partial last line that no later writer acknowledged
  | "start" // the log starts after seq 1 without a retention record saying why
  | "truncated"; // the key directory's sealed head is later than the log's end

export interface Problem {
  kind: ProblemKind;
  file: string;
  line: number;
  seq: number | null;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  path: string;
  files: number;
  records: number;
  /** The log's first record (also when broken, if any record was read). */
  first_seq: number | null;
  /** The last record read: the log's end when intact, the last one before the break when not. */
  last_seq: number | null;
  log_id: string | null;
  key_id: string | null;
  /** The Ed25519 public key the seals' signatures were checked with (--pubkey). */
  public_key_id: string | null;
  seals: {
    verified: number;
    unchecked: number;
    /** Seals whose Ed25519 signature was verified with the public key. */
    signatures_verified: number;
    last_sealed_seq: number | null;
  };
  /** Records after the last seal: a writer still running, or one that crashed. */
  unsealed_tail: number;
  /** Whether the sealed head in the key directory was found and matched. */
  sealed_head: "match" | "absent" | "not checked";
  /**
   * Whether records cut from the end would have been seen: only with a key and the sealed head
   * next to it. When false, `end_warning` says why ("end of log not checked: no key; ...").
   */
  end_checked: boolean;
  end_warning: string | null;
  broken: Problem | null;
  notes: string[];
}

export class VerifyError extends Error {}

/**
 * `keyFile`: the HMAC key (checks the MACs; whoever has it could also make them).
 * `publicKeyFile`: the Ed25519 public key (checks the signatures; cannot make them).
 */
export function verifyLog(path: string, keyFile?: string, publicKeyFile?: string): VerifyReport {
  let key: Uint8Array | null = null;
  let pub: ReturnType<typeof readPublicKey> | null = null;
  try {
    if (keyFile) key = readKey(keyFile);
    if (publicKeyFile) pub = readPublicKey(publicKeyFile);
  } catch (e) {
    throw new VerifyError((e as Error).message);
  }
  let files, single;
  try {
    ({ files, single } = logFiles(path));
  } catch (e) {
    if (e instanceof AuditReadError) throw new VerifyError(e.message);
    throw e;
  }
  const report: VerifyReport = {
    ok: false,
    path,
    files: files.length,
    records: 0,
    first_seq: null,
    last_seq: null,
    log_id: null,
    key_id: key ? keyId(key) : null,
    public_key_id: pub?.id ?? null,
    seals: { verified: 0, unchecked: 0, signatures_verified: 0, last_sealed_seq: null },
    unsealed_tail: 0,
    sealed_head: "not checked",
    end_checked: false,
    end_warning: null,
    broken: null,
    notes: [],
  };
  if (files.length === 0) throw new VerifyError(`no audit segments (audit-*.jsonl) in ${path}`);

  const decoder = new TextDecoder();
  let prev: { hash: string; seq: number; file: string; line: number } | null = null;
  let first: { file: string; seq: number; prev: string } | null = null;
  const hashAt = new Map<number, string>(); // seal seq -> line hash, for the sealed-head check
  const kept: { segment: string; seq: number; prev: string }[] = [];
  const acknowledged = new Set<string>();
  const torn: { problem: Problem; goodBytes: number }[] = [];
  let logId: string | null = null;

  const stop = (p: Problem): VerifyReport => {
    report.first_seq = first?.seq ?? null;
    report.last_seq = prev?.seq ?? null;
    report.log_id = logId;
    report.broken = p;
    return report;
  };

  for (const f of files) {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(f.path);
    } catch (e) {
      throw new VerifyError(`cannot read ${f.path}: ${(e as Error).message}`);
    }
    const { lines, goodBytes, tornBytes } = splitLines(bytes);
    if (bytes.length === 0) {
      report.notes.push(`${f.name} is empty (a writer stopped right after creating it)`);
    }
    for (let i = 0; i < lines.length; i++) {
      const at = { file: f.name, line: i + 1 };
      let rec: AuditRecord | null = null;
      try {
        const v = JSON.parse(decoder.decode(lines[i]));
        if (isRecord(v)) rec = v;
      } catch { /* reported below */ }
      if (!rec) {
        return stop({
          kind: "malformed",
          ...at,
          seq: prev ? prev.seq + 1 : null,
          message: `line is not an audit record (edited or corrupted)`,
        });
      }
      const hash = lineHash(lines[i]);
      if (prev === null) {
        first = { file: f.name, seq: rec.seq, prev: rec.prev };
      } else if (rec.seq !== prev.seq + 1) {
        return stop({
          kind: "sequence",
          ...at,
          seq: rec.seq,
          message: `seq ${rec.seq} follows seq ${prev.seq} (${prev.file}:${prev.line}): ` +
            `records were removed, inserted or reordered`,
        });
      } else if (rec.prev !== prev.hash) {
        return stop({
          kind: "edited",
          file: prev.file,
          line: prev.line,
          seq: prev.seq,
          message: `record seq ${prev.seq} does not hash to what seq ${rec.seq} ` +
            `(${f.name}:${i + 1}) links to: one of the two was altered or replaced`,
        });
      }
      const e = rec.event;
      if (e.class === "audit" && e.activity === "segment") {
        if (i !== 0 || (!single && e.segment !== f.name)) {
          return stop({
            kind: "segment",
            ...at,
            seq: rec.seq,
            message: `segment header for ${e.segment} found at ${f.name}:${i + 1}: ` +
              `segments were renamed or records moved`,
          });
        }
        if (logId !== null && e.log_id !== logId) {
          report.notes.push(`log id changes from ${logId} to ${e.log_id} at ${f.name}`);
        }
        logId = e.log_id;
        if (e.recovered) acknowledged.add(`${e.recovered.file}@${e.recovered.good_bytes}`);
      } else if (i === 0 && !single) {
        return stop({
          kind: "segment",
          ...at,
          seq: rec.seq,
          message: `${f.name} does not start with a segment header: its beginning was removed`,
        });
      }
      if (e.class === "audit" && e.activity === "seal") {
        if (e.head !== rec.prev) {
          return stop({
            kind: "seal",
            ...at,
            seq: rec.seq,
            message: `seal seq ${rec.seq} names head ${e.head.slice(0, 12)}… but links to ` +
              `${rec.prev.slice(0, 12)}…`,
          });
        }
        if (key) {
          if (e.key_id !== report.key_id) {
            return stop({
              kind: "seal",
              ...at,
              seq: rec.seq,
              message: `seal seq ${rec.seq} was made with key ${e.key_id}, not ${report.key_id}`,
            });
          }
          if (!logId || !sealMacValid(key, logId, rec.seq, rec.time, e.head, e.mac)) {
            return stop({
              kind: "seal",
              ...at,
              seq: rec.seq,
              message: `seal seq ${rec.seq} has a wrong MAC: the chain up to it was forged ` +
                `or altered`,
            });
          }
          report.seals.verified++;
        } else if (!pub) {
          report.seals.unchecked++;
        }
        if (pub) {
          const why = e.sig === undefined
            ? "is not signed"
            : e.sig_key_id !== pub.id
            ? `was signed with key ${e.sig_key_id}, not ${pub.id}`
            : !logId || !sealSignatureValid(pub.key, logId, rec.seq, rec.time, e.head, e.sig)
            ? "has a wrong signature: the chain up to it was forged or altered"
            : null;
          if (why) {
            return stop({
              kind: "seal",
              ...at,
              seq: rec.seq,
              message: `seal seq ${rec.seq} ${why}`,
            });
          }
          report.seals.signatures_verified++;
        }
        report.seals.last_sealed_seq = rec.seq;
        hashAt.set(rec.seq, hash);
      }
      if (e.class === "audit" && e.activity === "retention") kept.push(e.kept_from);
      prev = { hash, seq: rec.seq, file: f.name, line: i + 1 };
      report.records++;
    }
    if (tornBytes > 0) {
      torn.push({
        goodBytes,
        problem: {
          kind: "torn",
          file: f.name,
          line: lines.length + 1,
          seq: prev ? prev.seq + 1 : null,
          message: `${f.name} ends in a partial line of ${tornBytes} bytes after byte ` +
            `${goodBytes} (a crash mid-write, or a cut); the ${report.records} records before ` +
            `it are intact`,
        },
      });
    }
  }

  report.first_seq = first?.seq ?? null;
  report.last_seq = prev?.seq ?? null;
  report.log_id = logId;
  report.unsealed_tail = prev ? prev.seq - (report.seals.last_sealed_seq ?? 0) : 0;

  if (first && !single && !(first.seq === 1 && first.prev === GENESIS)) {
    const ok = kept.some((k) =>
      k.segment === first.file && k.seq === first.seq && k.prev === first.prev
    );
    if (!ok) {
      return stop({
        kind: "start",
        file: first.file,
        line: 1,
        seq: first.seq,
        message: `the log starts at seq ${first.seq}, and no retention record accounts for ` +
          `the records before it: earlier segments were removed`,
      });
    }
    report.notes.push(`records before seq ${first.seq} were removed by retention (recorded)`);
  }
  for (const { problem, goodBytes } of torn) {
    if (!acknowledged.has(`${problem.file}@${goodBytes}`)) return stop(problem);
    report.notes.push(
      `${problem.file} ends in a partial line after byte ${goodBytes}; the next writer ` +
        `recorded the crash and resumed the chain`,
    );
  }
  // The sealed head lives in the key directory, next to the key files.
  const headNextTo = keyFile ?? publicKeyFile;
  if ((key || pub) && logId && headNextTo) {
    const head = readHead(headNextTo, logId);
    if (!head) {
      report.sealed_head = "absent";
      report.end_warning = `end of log not checked: no sealed head for log ${logId} next to ` +
        `the key (${headPath(headNextTo, logId)})`;
    } else if (report.last_seq === null || report.last_seq < head.seq) {
      return stop({
        kind: "truncated",
        file: prev?.file ?? files[files.length - 1].name,
        line: (prev?.line ?? 0) + 1,
        seq: head.seq,
        message: `the sealed head says seal seq ${head.seq} (${head.time}) was written, but the ` +
          `log ends at seq ${report.last_seq}: records were cut from the end`,
      });
    } else if (hashAt.get(head.seq) !== head.hash) {
      return stop({
        kind: "truncated",
        file: prev?.file ?? "",
        line: 0,
        seq: head.seq,
        message: `record seq ${head.seq} is not the seal the sealed head recorded: the log was ` +
          `cut back and rewritten from there`,
      });
    } else {
      report.sealed_head = "match";
      report.end_checked = true;
    }
  }
  if (single) report.notes.push("single segment: its link to earlier segments is not checked");
  if (report.unsealed_tail > 0) {
    report.notes.push(
      `${report.unsealed_tail} records after the last seal (seq ${report.seals.last_sealed_seq}) ` +
        `are chained but not sealed yet (a running or crashed writer)`,
    );
  }
  if (!key && !pub) {
    report.end_warning = "end of log not checked: no key; pass --key/--pubkey";
  } else if (!logId) {
    report.end_warning = "end of log not checked: no segment header names the log's id";
  }
  if (pub && !key) report.notes.push("seal MACs were not checked (no --key); signatures were");
  report.ok = true;
  return report;
}
