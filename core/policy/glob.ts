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

/** A segment without wildcards, as its text; otherwise its tokens; null for "**". */
type Compiled = string | Token[] | null;

class CompiledGlob implements Glob {
  private readonly segs: Compiled[];
  /** Index of the only "**" segment, -1 when there is none, -2 when there are several. */
  private readonly globstar: number;

  constructor(
    readonly pattern: string,
    segments: Segment[],
    private readonly separator: string,
    private readonly caseInsensitive: boolean,
    private readonly literal: string | null,
  ) {
    this.segs = segments.map((seg) =>
      seg === "**"
        ? null
        : seg.every((t) => t.kind === "char")
        ? seg.map((t) => (t as { char: string }).char).join("")
        : seg
    );
    const stars = this.segs.flatMap((seg, i) => (seg === null ? [i] : []));
    this.globstar = stars.length === 0 ? -1 : stars.length === 1 ? stars[0] : -2;
  }

  private one(seg: Compiled, part: string): boolean {
    if (seg === null) return false;
    if (typeof seg === "string") return seg === part;
    return segmentMatches(seg, part, this.separator);
  }

  test(input: string): boolean {
    const value = this.caseInsensitive ? input.toLowerCase() : input;
    if (this.literal !== null) return value === this.literal;
    const parts = value.split(this.separator);
    const segs = this.segs;
    if (this.globstar === -1) {
      if (parts.length !== segs.length) return false;
      for (let i = 0; i < segs.length; i++) if (!this.one(segs[i], parts[i])) return false;
      return true;
    }
    if (this.globstar >= 0) {
      // prefix segments, then one or more parts (together non-empty), then suffix segments.
      const g = this.globstar;
      const after = segs.length - g - 1;
      const middle = parts.length - g - after;
      if (middle < 1 || (middle === 1 && parts[g] === "")) return false;
      for (let i = 0; i < g; i++) if (!this.one(segs[i], parts[i])) return false;
      for (let i = 1; i <= after; i++) {
        if (!this.one(segs[segs.length - i], parts[parts.length - i])) return false;
      }
      return true;
    }
    // Several "**": a memoised walk. memo: 0 unknown, 1 true, 2 false.
    const width = parts.length + 1;
    const memo = new Uint8Array((segs.length + 1) * width);
    const walk = (pi: number, vi: number): boolean => {
      if (pi === segs.length) return vi === parts.length;
      const key = pi * width + vi;
      if (memo[key] !== 0) return memo[key] === 1;
      let ok = false;
      const seg = segs[pi];
      if (seg === null) {
        for (let k = 1; vi + k <= parts.length && !ok; k++) {
          if (k === 1 && parts[vi] === "") continue;
          ok = walk(pi + 1, vi + k);
        }
      } else {
        ok = vi < parts.length && this.one(seg, parts[vi]) && walk(pi + 1, vi + 1);
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
