// What every recognizer shares: the finding shape and context-word helpers.

import type { Entity, EntityType } from "../types.ts";

export interface Recognizer {
  /** Types this recognizer can emit (lets detect() skip it when filtered out). */
  readonly types: readonly EntityType[];
  find(text: string): Entity[];
}

/** Lower-cased text in the `n` characters before `start`. */
export function before(text: string, start: number, n = 40): string {
  return text.slice(Math.max(0, start - n), start).toLowerCase();
}

/** Lower-cased text in the `n` characters after `end`. */
export function after(text: string, end: number, n = 20): string {
  return text.slice(end, end + n).toLowerCase();
}

export function clamp(score: number): number {
  return Math.max(0, Math.min(1, Math.round(score * 100) / 100));
}

/** Run a global regex over text and call `each` with every match. */
export function scan(text: string, re: RegExp, each: (m: RegExpExecArray) => void): void {
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    each(m);
  }
}

/**
 * Identifiers that only mean something next to a label ("passport no. 123456789"): find each
 * label, skip separators, then match `id` right there. Returns [start, end] pairs of the ids.
 */
export function labelled(text: string, label: RegExp, id: RegExp): [number, number][] {
  const out: [number, number][] = [];
  const gap =
    /[\s:#=()'"]*(?:(?:is|was|of)\s+)?(?:(?:(?:number|num|nr|no|id)\b\.?|#)[\s:#=]*(?:(?:is|was)\s+)?)?/iy;
  const idSticky = new RegExp(id.source, "y" + id.flags.replace(/[gy]/g, ""));
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
