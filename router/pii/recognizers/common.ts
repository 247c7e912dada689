// What every recognizer shares: the finding shape and context-word helpers.

import type { Entity, EntityType } from "../types.ts";

export interface Recognizer {
  /** Types this recognizer can emit (lets detect() skip it when filtered out). */
  readonly types: readonly EntityType[];
  find(text: string): Entity[];
}

// The recognizers of one detect() call all look at the same text: lower-case it once. Only the
// last text is kept, and detect() drops it when done (forgetText).
let lastText: string | null = null;
let lastLower = "";

let digitText: string | null = null;
let digitAt = -1;

/** Drop the remembered text, so no prompt stays referenced after its scan. */
export function forgetText(): void {
  lastText = null;
  lastLower = "";
  digitText = null;
}

/**
 * Index of the first ASCII digit in `text`, or -1 (computed once for consecutive calls with the
 * same text). Patterns that start with a digit need not be scanned before it, and patterns that
 * need a digit not at all in a text without one.
 */
export function firstDigit(text: string): number {
  if (text !== digitText) {
    digitAt = text.search(/[0-9]/);
    digitText = text;
  }
  return digitAt;
}

/** `text.toLowerCase()`, computed once for consecutive calls with the same text. */
export function lowerOf(text: string): string {
  if (text !== lastText) {
    lastLower = text.toLowerCase();
    lastText = text;
  }
  return lastLower;
}

/** Lower-cased text in the `n` characters before `start`. */
export function before(text: string, start: number, n = 40): string {
  const lower = lowerOf(text);
  // Lower-casing kept every offset (no "İ" and the like): slice the shared copy.
  if (lower.length === text.length) return lower.slice(Math.max(0, start - n), start);
  return text.slice(Math.max(0, start - n), start).toLowerCase();
}

/** Lower-cased text in the `n` characters after `end`. */
export function after(text: string, end: number, n = 20): string {
  return text.slice(end, end + n).toLowerCase();
}

/**
 * Whether `s` ends with a match of `re`, a sticky lookbehind (`/(?<=X)/y` for "ends with X"):
 * tried at the end of `s` only, where `/X$/` is tried from every position of `s`.
 */
export function endsWith(s: string, re: RegExp): boolean {
  re.lastIndex = s.length;
  return re.test(s);
}

export function clamp(score: number): number {
  return Math.max(0, Math.min(1, Math.round(score * 100) / 100));
}

/**
 * Run a global regex over text and call `each` with every match. `from`: where to start, for
 * callers that know no match begins earlier.
 */
export function scan(
  text: string,
  re: RegExp,
  each: (m: RegExpExecArray) => void,
  from = 0,
): void {
  re.lastIndex = from;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    each(m);
  }
}

const GAP =
  /[\s:#=()'"]*(?:(?:is|was|of)\s+)?(?:(?:(?:number|num|nr|no|id)\b\.?|#)[\s:#=]*(?:(?:is|was)\s+)?)?/iy;
const STICKY = new Map<RegExp, RegExp>();

/**
 * Identifiers that only mean something next to a label ("passport no. 123456789"): find each
 * label, skip separators, then match `id` right there. Returns [start, end] pairs of the ids.
 */
export function labelled(text: string, label: RegExp, id: RegExp): [number, number][] {
  const out: [number, number][] = [];
  let idSticky = STICKY.get(id);
  if (!idSticky) {
    STICKY.set(id, idSticky = new RegExp(id.source, "y" + id.flags.replace(/[gy]/g, "")));
  }
  const gap = GAP;
  scan(text, label, (m) => {
    gap.lastIndex = m.index + m[0].length;
    gap.exec(text);
    idSticky.lastIndex = gap.lastIndex;
    const v = idSticky.exec(text);
    if (v && !/[A-Za-z0-9]/.test(text[v.index + v[0].length] ?? "")) {
      out.push([v.index, v.index + v[0].length]);
    }
  });
  return out;
}
