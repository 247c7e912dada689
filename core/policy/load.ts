// Loads a policy from YAML text and reports every mistake as file:line:column.

import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import type { z } from "zod";
import { UNSUPPORTED_ENDPOINT_KEYS } from "./network.ts";
import { type Policy, policySchema } from "./schema.ts";

/** OpenShell keys the schema recognises only to refuse them: not offered as expected keys. */
const NOT_SUPPORTED_KEYS = new Set([
  ...Object.keys(UNSUPPORTED_ENDPOINT_KEYS),
  "network_middlewares",
]);

/** Policies larger than this are refused before parsing. */
export const MAX_POLICY_BYTES = 1024 * 1024;
/** Nesting deeper than this is refused (no real policy comes close). */
export const MAX_DEPTH = 32;

export interface PolicyProblem {
  file: string;
  line: number;
  column: number;
  message: string;
}

export class PolicyError extends Error {
  constructor(readonly problems: PolicyProblem[]) {
    super(problems.map(formatProblem).join("\n"));
  }
}

export function formatProblem(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.message}`;
}

export async function loadPolicyFile(path: string): Promise<Policy> {
  return parsePolicy(new TextDecoder().decode(await readPolicyFile(path)), path);
}

/**
 * A policy file's bytes (for its hash; decode them for its text): a regular file within the size
 * limit, or a PolicyError saying why not.
 */
export async function readPolicyFile(path: string): Promise<Uint8Array<ArrayBuffer>> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) {
      throw new PolicyError([{ file: path, line: 1, column: 1, message: "not a regular file" }]);
    }
    if (info.size > MAX_POLICY_BYTES) {
      throw new PolicyError([{
        file: path,
        line: 1,
        column: 1,
        message: `policy is ${info.size} bytes; the limit is ${MAX_POLICY_BYTES}`,
      }]);
    }
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof PolicyError) throw e;
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (e as Error).message;
    throw new PolicyError([{
      file: path,
      line: 0,
      column: 0,
      message: `cannot read policy: ${why}`,
    }]);
  }
  return bytes;
}

export function parsePolicy(text: string, file: string): Policy {
  return parseYamlWithSchema(text, file, policySchema, "policy");
}

/**
 * Parses YAML `text` and validates it with `schema`; every mistake becomes a PolicyProblem
 * with file:line:column. Shared by policies and the service configuration.
 */
export function parseYamlWithSchema<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  what: string,
): z.infer<S> {
  if (text.length > MAX_POLICY_BYTES) {
    throw new PolicyError([{
      file,
      line: 1,
      column: 1,
      message: `${what} is larger than ${MAX_POLICY_BYTES} bytes`,
    }]);
  }
  const lineCounter = new LineCounter();
  const tooDeep = Math.max(flowTooDeep(text), blockTooDeep(text));
  if (tooDeep >= 0) {
    throw new PolicyError([{
      ...positionOf(text, tooDeep),
      file,
      message: `nesting deeper than ${MAX_DEPTH} levels`,
    }]);
  }
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number | undefined, message: string): PolicyProblem => {
    const pos = lineCounter.linePos(offset ?? 0);
    return { file, line: pos.line, column: pos.col, message };
  };
  if (doc.errors.length > 0) {
    throw new PolicyError(
      doc.errors.slice(0, 5).map((e) => at(e.pos[0], `invalid YAML: ${firstLine(e.message)}`)),
    );
  }
  const depthProblem = findTooDeep(doc.contents, 0);
  if (depthProblem) {
    throw new PolicyError([at(depthProblem.range?.[0], `nesting deeper than ${MAX_DEPTH} levels`)]);
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 50 });
  } catch (e) {
    throw new PolicyError([at(0, `invalid YAML: ${firstLine((e as Error).message)}`)]);
  }
  if (data === null || data === undefined) throw new PolicyError([at(0, `${what} is empty`)]);

  const result = schema.safeParse(data);
  if (result.success) return result.data;
  throw new PolicyError(
    result.error.issues.map((issue) => describeIssue(issue, doc.contents, at, schema)),
  );
}

/**
 * Offset where `[`/`{` flow collections nest deeper than MAX_DEPTH, or -1. Checked on the text
 * before parsing, because the YAML parser recurses once per level and would exhaust the stack.
 * Quoted strings and comments are skipped.
 */
function flowTooDeep(text: string): number {
  let depth = 0;
  let quote = "";
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (comment) {
      if (c === "\n") comment = false;
    } else if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(text[i - 1]))) {
      comment = true;
    } else if (c === "[" || c === "{") {
      if (++depth > MAX_DEPTH) return i;
    } else if ((c === "]" || c === "}") && depth > 0) {
      depth--;
    }
  }
  return -1;
}

/**
 * Offset of the first line whose indentation nests deeper than MAX_DEPTH block levels, or -1.
 * Each deeper indentation (and each "- " sequence marker) is one level; lines of block scalars
 * (after `|` or `>`) are text, not levels.
 */
function blockTooDeep(text: string): number {
  const stack: number[] = [];
  let scalarIndent = -1;
  let offset = 0;
  for (const line of text.split("\n")) {
    const lineStart = offset;
    offset += line.length + 1;
    const body = line.trimStart();
    const indent = line.length - body.length;
    if (body === "" || body.startsWith("#")) continue;
    if (scalarIndent >= 0) {
      if (indent > scalarIndent) continue;
      scalarIndent = -1;
    }
    while (stack.length && stack[stack.length - 1] >= indent) stack.pop();
    stack.push(indent);
    const markers = /^(-\s+)*/.exec(body)![0].replace(/\s+/g, "").length;
    if (stack.length + markers > MAX_DEPTH) return lineStart + indent;
    if (/[|>][-+0-9]*\s*(#.*)?$/.test(body)) scalarIndent = indent;
  }
  return -1;
}

function positionOf(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

/**
 * Line and column of the node at `path` in a policy text that parsePolicy accepted (for
 * warnings about a valid policy); the closest existing parent when the key is absent.
 */
export function locate(text: string, path: (string | number)[]): { line: number; column: number } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter });
  for (let n = path.length; n >= 0; n--) {
    const node = lookup(doc.contents, path.slice(0, n)) as Node | undefined;
    if (node?.range) {
      const pos = lineCounter.linePos(node.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return { line: 1, column: 1 };
}

function firstLine(s: string): string {
  return s.split("\n")[0];
}

function findTooDeep(node: unknown, depth: number): Node | null {
  if (depth > MAX_DEPTH) return node as Node;
  if (isMap(node) || isSeq(node)) {
    for (const item of node.items) {
      const child = isPair(item) ? item.value : item;
      const found = findTooDeep(child, depth + 1);
      if (found) return found;
    }
  }
  return null;
}

type At = (offset: number | undefined, message: string) => PolicyProblem;

function describeIssue(
  issue: z.core.$ZodIssue,
  root: unknown,
  at: At,
  schema: z.ZodType,
): PolicyProblem {
  const path = issue.path as (string | number)[];
  const where = path.length ? path.join(".") : "(top level)";
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0];
    const node = lookup(root, path);
    const keyNode = isMap(node)
      ? node.items.find((p) => isScalar(p.key) && p.key.value === key)?.key
      : undefined;
    const known = knownKeys(schema, path);
    const hint = suggest(key, known);
    const listed = known.filter((k) => !NOT_SUPPORTED_KEYS.has(k));
    const message = `unknown key ${JSON.stringify(key)} in ${where}` +
      (hint
        ? ` (did you mean ${JSON.stringify(hint)}?)`
        : listed.length
        ? ` (expected one of: ${listed.join(", ")})`
        : "");
    return at(
      (keyNode as Node | undefined)?.range?.[0] ?? (node as Node | undefined)?.range?.[0],
      message,
    );
  }
  const node = lookup(root, path) ?? lookup(root, path.slice(0, -1));
  const offset = (node as Node | undefined)?.range?.[0];
  let message = issue.message;
  if (issue.code !== "custom" && path.length > 0 && lookup(root, path) === undefined) {
    message = `missing required key ${JSON.stringify(path.at(-1))}`;
  } else if (issue.code === "invalid_value" && "values" in issue) {
    message = issue.values.length === 1
      ? `must be ${JSON.stringify(issue.values[0])}`
      : `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  return at(offset, `${where}: ${message}`);
}

function lookup(root: unknown, path: (string | number)[]): unknown {
  let node = root;
  for (const key of path) {
    if (isMap(node)) {
      node = node.items.find((p) => isScalar(p.key) && p.key.value === key)?.value;
    } else if (isSeq(node) && typeof key === "number") {
      node = node.items[key];
    } else {
      return undefined;
    }
  }
  return node;
}

/** The keys the schema allows at `path`, for "did you mean" hints. */
function knownKeys(root: z.ZodType, path: (string | number)[]): string[] {
  // deno-lint-ignore no-explicit-any
  let schema: any = root;
  for (const key of path) {
    while (schema?.def?.innerType) schema = schema.def.innerType;
    if (schema?.def?.type === "object") schema = schema.def.shape[key];
    else if (schema?.def?.type === "array") schema = schema.def.element;
    else if (schema?.def?.type === "record") schema = schema.def.valueType;
    else return [];
  }
  while (schema?.def?.innerType) schema = schema.def.innerType;
  return schema?.def?.type === "object" ? Object.keys(schema.def.shape) : [];
}

export function suggest(word: string, candidates: string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

/** Damerau-Levenshtein distance (optimal string alignment): a swap counts as one edit. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from(
    { length: a.length + 1 },
    (_, i) => [i, ...Array(b.length).fill(0)],
  );
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}
