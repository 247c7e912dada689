// `clawcage pii scan|redact`: run the privacy router's PII/PHI detector on text.
//
//   clawcage pii scan [--json] [--min-score X] [FILE]   entities in FILE (stdin when absent)
//   clawcage pii scan --jsonl [FILE]                     lines {"text": ...} -> {"entities": [...]}
//   clawcage pii redact [FILE]                           text with <TYPE_N> placeholders

import { detect } from "../../router/pii/detect.ts";
import type { Entity } from "../../router/pii/types.ts";
import { fail } from "./common.ts";

const USAGE = `Usage:
  clawcage pii scan [--json | --jsonl] [--min-score X] [FILE]
  clawcage pii redact [--min-score X] [FILE]

Reads FILE, or standard input when no FILE is given (UTF-8 text).
  scan            one entity per line: TYPE start-end score masked-text
  scan --json     {"entities": [{"type","start","end","score"}]} (offsets are JS string indices)
  scan --jsonl    each input line is {"text": "..."}; writes one {"entities": [...]} line per line
                  ({"line": N, "error": "..."} for a bad line, the rest go on; exit 1 if any)
  redact          the text with each entity replaced by <TYPE_N> (same value, same placeholder)`;

interface Options {
  mode: "scan" | "redact";
  format: "text" | "json" | "jsonl";
  minScore: number;
  file?: string;
}

function parse(args: string[]): Options | null {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") return null;
  if (sub !== "scan" && sub !== "redact") {
    fail(`pii: unknown subcommand ${JSON.stringify(sub)} (expected scan or redact)`);
  }
  const o: Options = { mode: sub, format: "text", minScore: 0.5 };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "--help" || a === "-h") return null;
    if (a === "--json" || a === "--jsonl") {
      if (sub !== "scan") fail(`pii redact: ${a} is only for pii scan`);
      o.format = a === "--json" ? "json" : "jsonl";
    } else if (a === "--min-score") {
      const v = Number(rest[++i]);
      if (!(v >= 0 && v <= 1)) fail("pii: --min-score needs a number between 0 and 1");
      o.minScore = v;
    } else if (a.startsWith("-") && a !== "-") {
      fail(`pii ${sub}: unknown option ${a}`);
    } else if (o.file === undefined) {
      o.file = a;
    } else {
      fail(`pii ${sub}: only one FILE may be given`);
    }
  }
  return o;
}

async function readInput(file: string | undefined): Promise<Uint8Array> {
  if (file === undefined || file === "-") {
    return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  }
  try {
    return await Deno.readFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(`pii: ${file}: no such file`);
    if (e instanceof Deno.errors.PermissionDenied) fail(`pii: ${file}: permission denied`);
    if (e instanceof Deno.errors.IsADirectory) fail(`pii: ${file}: is a directory`);
    throw e;
  }
}

/** Strict UTF-8 decode; on failure name the line of the first bad byte. */
function decode(bytes: Uint8Array, name: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    // Find the first invalid sequence by decoding growing prefixes line by line.
    let line = 1, start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        try {
          new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(start, i));
        } catch {
          break;
        }
        line++;
        start = i + 1;
      }
    }
    fail(`pii: ${name}:${line}: input is not valid UTF-8`);
  }
}

/** Show enough of a value to recognise the finding, never the value itself. */
export function mask(value: string): string {
  const chars = [...value];
  if (chars.length <= 4) return "*".repeat(chars.length);
  const keep = chars.length >= 12 ? 2 : 1;
  return chars.slice(0, keep).join("") + "*".repeat(chars.length - 2 * keep) +
    chars.slice(-keep).join("");
}

/** Replace entities by <TYPE_N>; the same (type, value) always gets the same N. */
export function redact(text: string, entities: readonly Entity[]): string {
  const ids = new Map<string, string>();
  const next = new Map<string, number>();
  let out = "", last = 0;
  for (const e of entities) {
    const value = text.slice(e.start, e.end);
    const key = `${e.type}\u0000${value}`;
    let ph = ids.get(key);
    if (!ph) {
      const n = (next.get(e.type) ?? 0) + 1;
      next.set(e.type, n);
      ids.set(key, ph = `<${e.type}_${n}>`);
    }
    out += text.slice(last, e.start) + ph;
    last = e.end;
  }
  return out + text.slice(last);
}

async function write(s: string): Promise<void> {
  const data = new TextEncoder().encode(s);
  let off = 0;
  while (off < data.length) off += await Deno.stdout.write(data.subarray(off));
}

/**
 * `scan --jsonl`: one output line per input line, in order. A line that is not valid UTF-8, not
 * JSON or not {"text": "..."} gets {"line": N, "error": "..."} in its place and the rest go on;
 * then one line on stderr says how many failed, and the exit status is 1.
 */
async function scanJsonLines(
  input: Uint8Array,
  name: string,
  opts: { minScore: number },
): Promise<number> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let out = "";
  let lines = 0;
  let failed = 0;
  let first = "";
  for (let start = 0; start < input.length;) {
    let end = input.indexOf(0x0a, start);
    if (end < 0) end = input.length;
    const bytes = input.subarray(start, end);
    start = end + 1;
    lines++;
    let error: string | null = null;
    let text = "";
    try {
      const doc = JSON.parse(decoder.decode(bytes)) as { text?: unknown } | null;
      if (typeof doc !== "object" || doc === null || typeof doc.text !== "string") {
        error = 'expected {"text": "..."}';
      } else {
        text = doc.text;
      }
    } catch (e) {
      error = e instanceof SyntaxError ? "not valid JSON" : "not valid UTF-8";
    }
    if (error !== null) {
      failed++;
      if (!first) first = `${name}:${lines}: ${error}`;
      out += JSON.stringify({ line: lines, error }) + "\n";
    } else {
      const entities = detect(text, opts).map(({ type, start, end, score }) => ({
        type,
        start,
        end,
        score,
      }));
      out += JSON.stringify({ entities }) + "\n";
    }
    if (out.length > 1 << 16) {
      await write(out);
      out = "";
    }
  }
  await write(out);
  if (failed > 0) {
    console.error(`clawcage: pii: ${failed} of ${lines} lines failed (first: ${first})`);
    return 1;
  }
  return 0;
}

export async function piiCommand(args: string[]): Promise<number> {
  const o = parse(args);
  if (!o) {
    console.log(USAGE);
    return args.length === 0 ? 2 : 0;
  }
  const name = o.file ?? "stdin";
  const input = await readInput(o.file);
  const opts = { minScore: o.minScore };
  if (o.format === "jsonl") return await scanJsonLines(input, name, opts);
  const text = decode(input, name);
  if (o.mode === "redact") {
    await write(redact(text, detect(text, opts)));
    return 0;
  }
  const entities = detect(text, opts);
  if (o.format === "json") {
    await write(JSON.stringify({ entities }, null, 2) + "\n");
    return 0;
  }
  let out = "";
  for (const e of entities) {
    out += `${e.type.padEnd(22)} ${`${e.start}-${e.end}`.padEnd(12)} ${e.score.toFixed(2)}  ${
      mask(text.slice(e.start, e.end)).replace(/\s/g, " ")
    }\n`;
  }
  if (entities.length === 0) out = "no entities found\n";
  await write(out);
  return 0;
}
