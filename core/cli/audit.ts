// `clawcage audit verify|tail|query`: check, follow and search the audit trail.

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { type AuditRecord, type Decision, EVENT_CLASSES, EVENT_TYPES } from "../audit/events.ts";
import { type Filter, formatRecord, hostGlob, matches, parseTime } from "../audit/format.ts";
import { PUBLIC_KEY_FILE } from "../audit/key.ts";
import { defaultAuditDir, defaultKeyDir } from "../audit/paths.ts";
import { auditSettings } from "../audit/settings.ts";
import { writerKeys } from "../audit/verify_keys.ts";
import { loadPolicyFile, PolicyError } from "../policy/load.ts";
import { AuditReadError, logFiles, logsAt, parseRecord, readRecords } from "../audit/read.ts";
import { type SegmentRef, splitLines } from "../audit/segments.ts";
import { VerifyError, verifyLog, type VerifyReport } from "../audit/verify.ts";
import { UsageError } from "./common.ts";

export const AUDIT_HELP = `Usage: clawcage audit COMMAND [options] [PATH]

PATH is a log directory, one segment file, or a directory of log directories (one per agent:
verify checks each, query and tail merge them by time) (default: ${defaultAuditDir()}).

Commands:
  verify [--json] [--key FILE] [--pubkey FILE] [--policy FILE] [PATH]
      check every hash link, sequence number and seal; report the first broken record with
      its file, line and seq. Exit 0 when intact, 1 when broken, 2 when it cannot be read.
      --key FILE: the HMAC sealing key. --pubkey FILE: the Ed25519 public key
      (${PUBLIC_KEY_FILE} in the key directory; checks the seals' signatures and cannot make
      them: give it to auditors). Without either, the keys in the writer's key directory:
      --policy FILE's audit.key_dir (its log_dir is the default PATH), else
      ${defaultKeyDir()} for the default log or for a log whose sealed head it holds.
      Without any key the seals and the end of the log are not checked (a cut-off end looks
      intact), and verify says so.
  tail [-f] [-n N] [--all] [--json] [PATH]
      the last N events (default 20); -f keeps following new ones.
  query [--since T] [--until T] [--type T]... [--decision D] [--sandbox S] [--host GLOB]
        [--all] [--json] [PATH]
      events that match every filter. T: ISO 8601 (2026-05-01T10:00Z) or a duration ago
      (15m, 2h, 7d). --type: a class (network, http, process, file, api, config, audit) or
      class.activity (http.request). --decision: allow, deny or audit. --host: a glob on the
      destination host (*.example.com).

--all includes the log's own records (segment headers, seals, retention); --json prints the
records as JSON lines.`;

export async function auditCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "verify":
      return await verifyCommand(rest);
    case "tail":
      return await tailCommand(rest);
    case "query":
      return queryCommand(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(AUDIT_HELP);
      return sub === undefined ? 2 : 0;
    default:
      throw new UsageError(
        `unknown audit command ${JSON.stringify(sub)} (see clawcage audit --help)`,
      );
  }
}

type Options = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;
type Values = Record<string, string | boolean | string[] | undefined>;

function parse(args: string[], options: Options): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (see clawcage audit --help)`);
  }
}

function onePath(positionals: string[]): string | undefined {
  if (positionals.length > 1) throw new UsageError(`unexpected argument: ${positionals[1]}`);
  return positionals[0];
}

// ---- verify ------------------------------------------------------------------------------

async function verifyCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    json: { type: "boolean" },
    key: { type: "string" },
    pubkey: { type: "string" },
    policy: { type: "string", short: "p" },
  });
  if (values.help) {
    console.log(AUDIT_HELP);
    return 0;
  }
  const given = onePath(positionals);
  const policyPath = values.policy as string | undefined;
  let settings = auditSettings(undefined);
  if (policyPath) {
    try {
      settings = auditSettings((await loadPolicyFile(policyPath)).audit);
    } catch (e) {
      if (e instanceof PolicyError) throw new UsageError(e.message);
      throw e;
    }
  }
  const path = given ?? settings.dir;
  const keyFile = values.key as string | undefined;
  const pubFile = values.pubkey as string | undefined;
  // Without --key/--pubkey: the key directory the writer used, where it can be told (the
  // policy names it for every log; the default key directory is the default log's).
  const isDefault = given === undefined || resolve(given) === settings.dir;
  const named = (log: string) =>
    policyPath
      ? `audit.key_dir of ${policyPath}`
      : isDefault && log === path
      ? "the default log's key directory"
      : null;
  // A directory of logs (one per agent) is verified log by log.
  const reports: VerifyReport[] = [];
  try {
    for (const log of logsAt(path)) {
      if (keyFile || pubFile) {
        reports.push(verifyLog(log, keyFile, pubFile));
        continue;
      }
      const found = writerKeys(log, settings.keyDir, named(log));
      const r = verifyLog(log, found.keyFile, found.pubFile);
      if (found.source) r.notes.push(found.source);
      reports.push(r);
    }
  } catch (e) {
    if (e instanceof VerifyError || e instanceof AuditReadError) throw new UsageError(e.message);
    throw e;
  }
  if (values.json) {
    console.log(JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2));
  } else {
    for (const r of reports) printReport(r);
  }
  return reports.every((r) => r.ok) ? 0 : 1;
}

function printReport(r: VerifyReport): void {
  const range = r.first_seq !== null ? `seq ${r.first_seq}..${r.last_seq}` : "no records";
  if (r.broken) {
    const b = r.broken;
    console.log(
      `BROKEN: ${r.path}: ${b.file}:${b.line}${b.seq !== null ? ` (seq ${b.seq})` : ""}: ` +
        `${b.kind}: ${b.message}`,
    );
  } else {
    const checked = [
      r.key_id ? `${r.seals.verified} seals verified with key ${r.key_id}` : null,
      r.public_key_id
        ? `${r.seals.signatures_verified} signatures verified with public key ${r.public_key_id}`
        : null,
    ].filter(Boolean).join(", ");
    const seals = checked
      ? checked + (r.sealed_head === "match" ? ", sealed head matches" : "")
      : `${r.seals.unchecked} seals NOT checked (no key)`;
    const intact = r.end_checked ? "intact" : `intact (${r.end_warning})`;
    console.log(
      `${intact}: ${r.path}: ${r.files} file(s), ${r.records} records (${range}), ${seals}`,
    );
  }
  for (const n of r.notes) console.log(`  note: ${n}`);
}

// ---- query -------------------------------------------------------------------------------

const DECISIONS: string[] = ["allow", "deny", "audit"] satisfies Decision[];

function queryCommand(args: string[]): number {
  const { values, positionals } = parse(args, {
    since: { type: "string" },
    until: { type: "string" },
    type: { type: "string", multiple: true },
    decision: { type: "string" },
    sandbox: { type: "string" },
    host: { type: "string" },
    all: { type: "boolean" },
    json: { type: "boolean" },
  });
  if (values.help) {
    console.log(AUDIT_HELP);
    return 0;
  }
  const path = onePath(positionals) ?? defaultAuditDir();
  const filter: Filter = { all: values.all as boolean | undefined };
  for (const k of ["since", "until"] as const) {
    const v = values[k] as string | undefined;
    if (v === undefined) continue;
    const t = parseTime(v);
    if (t === null) {
      throw new UsageError(`--${k} ${v}: not an ISO 8601 time or a duration like 15m`);
    }
    filter[k] = t;
  }
  if (values.type) {
    filter.types = values.type as string[];
    for (const t of filter.types) {
      if (!(EVENT_CLASSES as string[]).includes(t) && !EVENT_TYPES.includes(t)) {
        throw new UsageError(
          `--type ${t}: no such event class or type; classes: ${EVENT_CLASSES.join(", ")}; ` +
            `types: ${EVENT_TYPES.join(", ")}`,
        );
      }
    }
  }
  const decision = values.decision as string | undefined;
  if (decision !== undefined && !DECISIONS.includes(decision)) {
    throw new UsageError(
      `--decision ${decision}: no such decision; one of: ${DECISIONS.join(", ")}`,
    );
  }
  filter.decision = decision;
  filter.sandbox = values.sandbox as string | undefined;
  if (values.host) filter.host = hostGlob(values.host as string);
  try {
    for (const { record } of readRecords(path)) {
      if (matches(record, filter)) print(record, values.json as boolean | undefined);
    }
  } catch (e) {
    if (e instanceof AuditReadError) throw new UsageError(e.message);
    throw e;
  }
  return 0;
}

function print(r: AuditRecord, json?: boolean): void {
  console.log(json ? JSON.stringify(r) : formatRecord(r));
}

// ---- tail --------------------------------------------------------------------------------

async function tailCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    follow: { type: "boolean", short: "f" },
    lines: { type: "string", short: "n" },
    all: { type: "boolean" },
    json: { type: "boolean" },
  });
  if (values.help) {
    console.log(AUDIT_HELP);
    return 0;
  }
  const path = onePath(positionals) ?? defaultAuditDir();
  const n = Number(values.lines ?? 20);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`-n ${values.lines}: not a count`);
  const filter: Filter = { all: values.all as boolean | undefined };
  const json = values.json as boolean | undefined;
  try {
    const logs = logsAt(path);
    if (values.follow && logs.length > 1) {
      // A log with other logs below it (the default directory: clawcage run's log and the
      // service's agents' logs) follows its own; a directory of logs names them.
      if (logs[0] !== path) {
        throw new UsageError(
          `tail -f follows one log; ${path} holds ${logs.length}: ${logs.join(", ")}`,
        );
      }
      console.error(
        `clawcage: audit: following ${path}; the logs below it are not followed: ` +
          logs.slice(1).join(", "),
      );
    }
    const last: AuditRecord[] = [];
    const keep = (record: AuditRecord) => {
      if (!matches(record, filter)) return;
      last.push(record);
      if (last.length > n) last.shift();
    };
    if (!values.follow) {
      for (const { record } of readRecords(path)) keep(record);
      for (const r of last) print(r, json);
      return 0;
    }
    // Following: remember exactly where the first read ended, so that nothing written in
    // between is skipped or printed twice.
    let at: FollowFrom = { segment: null, offset: 0 };
    for (const f of logFiles(path).files) {
      const { lines, goodBytes } = splitLines(readFrom(f.path, 0));
      for (const l of lines) {
        const r = parseRecord(l);
        if (r) keep(r);
      }
      at = { segment: f, offset: goodBytes };
    }
    for (const r of last) print(r, json);
    await follow(path, filter, json, at);
    return 0;
  } catch (e) {
    if (e instanceof AuditReadError) throw new UsageError(e.message);
    throw e;
  }
}

/** Polls the newest segment for complete new lines, moving on when a newer segment appears. */
interface FollowFrom {
  /** The segment the first read ended in (null: the log had none yet). */
  segment: SegmentRef | null;
  /** Bytes of it already read: up to its last complete line (a torn end waits). */
  offset: number;
}

async function follow(
  path: string,
  filter: Filter,
  json: boolean | undefined,
  from: FollowFrom,
): Promise<never> {
  let files: SegmentRef[];
  let current = from.segment ?? undefined;
  let offset = from.offset;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    if (current) {
      const bytes = readFrom(current.path, offset);
      const { lines, goodBytes } = splitLines(bytes);
      offset += goodBytes;
      for (const l of lines) {
        const r = parseRecord(l);
        if (r && matches(r, filter)) print(r, json);
      }
    }
    files = logFiles(path).files;
    const newest = files.at(-1);
    if (newest && newest.index !== current?.index) {
      // Read what is left of the old segment first, then switch.
      if (current) {
        const rest = splitLines(readFrom(current.path, offset));
        for (const l of rest.lines) {
          const r = parseRecord(l);
          if (r && matches(r, filter)) print(r, json);
        }
      }
      const next = files.find((f) => f.index > (current?.index ?? -1));
      current = next ?? newest;
      offset = 0;
    }
  }
}

function readFrom(path: string, offset: number): Uint8Array {
  try {
    const f = Deno.openSync(path, { read: true });
    try {
      const size = f.statSync().size;
      if (size <= offset) return new Uint8Array(0);
      f.seekSync(offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(size - offset);
      let have = 0;
      while (have < buf.length) {
        const n = f.readSync(buf.subarray(have));
        if (!n) break;
        have += n;
      }
      return buf.subarray(0, have);
    } finally {
      f.close();
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return new Uint8Array(0);
    throw e;
  }
}
