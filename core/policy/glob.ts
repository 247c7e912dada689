// Glob patterns of the policy format, with OpenShell's matcher semantics. Each matcher splits
// values at a separator ("/" for paths, "." for hosts and query values):
//   *      any characters except the separator (possibly none)
//   **     as a whole segment: one or more segments, across separators
//          (`/repos/**` matches `/repos/a/b`, not `/repos`); next to other characters: like *
//   ?      one character except the separator
//   [...]  one character from a set (`[0-9]`, `[!a-z]` or `[^a-z]` negated), never the separator
//   \x     the character x literally
//
// Compiled once; matching never backtracks exponentially (no RegExp over the whole value):
// segments are matched with the linear wildcard algorithm, `**` by a memoised walk over segments.

/** Patterns longer than this are refused (a real policy never comes close). */
export const MAX_GLOB_LENGTH = 1024;
/** More wildcards than this in one pattern are refused. */
export const MAX_GLOB_WILDCARDS = 16;

export class GlobSyntaxError extends Error {}

/** One character position inside a segment. */
type Token =
  | { kind: "char"; char: string }
  | { kind: "one" }
  | { kind: "class"; re: RegExp }
  | { kind: "star" };

/** A segment: its tokens, or "**" (one or more whole segments). */
type Segment = Token[] | "**";

export interface Glob {
  readonly pattern: string;
  test(value: string): boolean;
}

/** True when the pattern contains a wildcard (`*`, `?` or `[`), i.e. is not a literal. */
export function hasWildcard(pattern: string): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") i++;
    else if (c === "*" || c === "?" || c === "[") return true;
  }
  return false;
}

/** The pattern's literal text (escapes removed); only meaningful when !hasWildcard. */
export function unescapeGlob(pattern: string): string {
  return pattern.replace(/\\(.)/g, "$1");
}

const CLASS_SPECIAL = /[\\\]\[^-]/g;

function parseSegments(pattern: string, separator: string): Segment[] {
  const segments: Segment[] = [];
  let tokens: Token[] = [];
  let wildcards = 0;
  let segStart = 0;
  const close = (end: number) => {
    const raw = pattern.slice(segStart, end);
    segments.push(raw === "**" || /^\*{3,}$/.test(raw) ? "**" : tokens);
    tokens = [];
    segStart = end + 1;
  };
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === separator) {
      close(i);
    } else if (c === "\\") {
      if (i + 1 >= pattern.length) throw new GlobSyntaxError("pattern ends with a lone \\");
      const next = pattern[++i];
      tokens.push({ kind: "char", char: next });
    } else if (c === "*") {
      wildcards++;
      while (pattern[i + 1] === "*") i++;
      if (tokens.at(-1)?.kind !== "star") tokens.push({ kind: "star" });
    } else if (c === "?") {
      wildcards++;
      tokens.push({ kind: "one" });
    } else if (c === "[") {
      wildcards++;
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) throw new GlobSyntaxError("unclosed [ in pattern");
      let body = pattern.slice(i + 1, end);
      let negate = false;
      if (body[0] === "!" || body[0] === "^") {
        negate = true;
        body = body.slice(1);
      }
      if (body === "") throw new GlobSyntaxError("empty [] in pattern");
      let cls = "";
      for (let j = 0; j < body.length; j++) {
        if (body[j] === "-" && j > 0 && j < body.length - 1) {
          if (body[j - 1] > body[j + 1]) {
            throw new GlobSyntaxError(`bad range ${body[j - 1]}-${body[j + 1]} in [...]`);
          }
          cls += "-";
        } else {
          cls += body[j].replace(CLASS_SPECIAL, "\\$&");
        }
      }
      tokens.push({ kind: "class", re: new RegExp(`^[${negate ? "^" : ""}${cls}]$`, "s") });
      i = end;
    } else {
      tokens.push({ kind: "char", char: c });
    }
  }
  close(pattern.length);
  if (wildcards > MAX_GLOB_WILDCARDS) {
    throw new GlobSyntaxError(`pattern has more than ${MAX_GLOB_WILDCARDS} wildcards`);
  }
  return segments;
}

function tokenMatches(t: Token, ch: string, separator: string): boolean {
  switch (t.kind) {
    case "char":
      return t.char === ch;
    case "one":
      return ch !== separator;
    case "class":
      return ch !== separator && t.re.test(ch);
    case "star":
      return false;
  }
}

/** Linear wildcard matching of one segment (the value contains no separator). */
function segmentMatches(tokens: Token[], s: string, separator: string): boolean {
  let p = 0;
  let i = 0;
  let starP = -1;
  let starI = 0;
  while (i < s.length) {
    if (p < tokens.length && tokens[p].kind === "star") {
      starP = p++;
      starI = i;
    } else if (p < tokens.length && tokenMatches(tokens[p], s[i], separator)) {
      p++;
      i++;
    } else if (starP >= 0) {
      p = starP + 1;
      i = ++starI;
    } else {
      return false;
    }
  }
  while (p < tokens.length && tokens[p].kind === "star") p++;
  return p === tokens.length;
}

class CompiledGlob implements Glob {
  constructor(
    readonly pattern: string,
    private readonly segments: Segment[],
    private readonly separator: string,
    private readonly caseInsensitive: boolean,
    private readonly literal: string | null,
  ) {}

  test(input: string): boolean {
    const value = this.caseInsensitive ? input.toLowerCase() : input;
    if (this.literal !== null) return value === this.literal;
    const parts = value.split(this.separator);
    const segs = this.segments;
    // memo[pi * (parts.length + 1) + vi]: 0 unknown, 1 true, 2 false.
    const width = parts.length + 1;
    const memo = new Uint8Array((segs.length + 1) * width);
    const walk = (pi: number, vi: number): boolean => {
      if (pi === segs.length) return vi === parts.length;
      const key = pi * width + vi;
      if (memo[key] !== 0) return memo[key] === 1;
      let ok = false;
      const seg = segs[pi];
      if (seg === "**") {
        // One or more whole segments, together non-empty.
        for (let k = 1; vi + k <= parts.length && !ok; k++) {
          if (k === 1 && parts[vi] === "") continue;
          ok = walk(pi + 1, vi + k);
        }
      } else {
        ok = vi < parts.length && segmentMatches(seg, parts[vi], this.separator) &&
          walk(pi + 1, vi + 1);
      }
      memo[key] = ok ? 1 : 2;
      return ok;
    };
    return walk(0, 0);
  }
}

/** Compiles `pattern`; throws GlobSyntaxError with a short reason. */
export function compileGlob(
  pattern: string,
  separator: "/" | ".",
  opts: { caseInsensitive?: boolean } = {},
): Glob {
  if (pattern.length > MAX_GLOB_LENGTH) {
    throw new GlobSyntaxError(`pattern is longer than ${MAX_GLOB_LENGTH} characters`);
  }
  const ci = opts.caseInsensitive ?? false;
  const text = ci ? pattern.toLowerCase() : pattern;
  const segments = parseSegments(text, separator);
  const literal = hasWildcard(text) ? null : unescapeGlob(text);
  return new CompiledGlob(pattern, segments, separator, ci, literal);
}
