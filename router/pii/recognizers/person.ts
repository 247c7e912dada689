// Person names: runs of capitalised words, judged by the compromise lexicon (known first and
// last names) and by context (titles, greetings, "patient", "name:", ...).

import type { Entity } from "../types.ts";
import { COMMON, FIRST, LAST, perSpelling, PLACE, wordFlags } from "../lexicon.ts";
import { before, clamp, endsWith, type Recognizer, scan } from "./common.ts";

const WORD = String.raw`\p{Lu}\p{Ll}+(?:['’]\p{Lu}?\p{Ll}+)?(?:\p{Lu}\p{Ll}+)?(?:-\p{Lu}\p{Ll}+)?`;
const RUN = new RegExp(
  String.raw`(?<![\p{L}\p{N}_@./-])${WORD}(?:[ \t]+${WORD}){0,3}(?![\p{L}\p{N}_@-])`,
  "gu",
);
const WORD_RE = new RegExp(WORD, "gu");

/** Capitalised words that begin sentences, headers and greetings but are not names. */
const STOP = new Set(
  ("patient dear hi hello hey good morning afternoon evening thanks thank best kind regards " +
    "sincerely customer client case ticket subject from to cc re fw fwd note dr mr mrs ms prof " +
    "miss sir madam the a an this that please your my our we i he she they it is was called " +
    "reports says wants presented attending physician prescriber referral emergency contact " +
    "discharge summary progress chief lab pharmacy identity tax refund wire escalation rx " +
    "medicare medicaid insurance member home address phone email date birth dob mrn ssn npi dea " +
    "account bank routing card order invoice billing shipping questions hello team support " +
    "admin user owner name first last full beneficiary taxpayer old new street avenue road " +
    "questions regards your visa passport appointment documents track")
    .split(" "),
);
const isStop = perSpelling((word) => STOP.has(word.toLowerCase()));
// The context before a name is tested at its end only (endsWith): "ends with" as lookbehinds.
const TITLE = /(?<=\b(?:dr|mr|mrs|ms|mx|miss|prof|sir|nurse|doctor)\.?\s*)/y;
const CONTEXT =
  /(?<=\b(?:patient|name|customer|client|contact|dear|hi|hello|hey|by|physician|prescriber|attending|beneficiary|taxpayer|member|caller|regards|sincerely|thanks|thank you|cc|nurse|son|daughter|wife|husband|mother|father|guardian|signed|seen|opened by|referred|refers|morning|afternoon|evening)[\s:,]*)/y;
const CONTEXT_AFTER =
  /^(?:\s*,\s*(?:a|an|age|aged)\s+\d|\s*\((?:dob|mrn|npi|age|[\w.+-]+@)|\s+(?:was|is|has|called|reports|presented|wants|will|said|says))/i;

const GREETING = /(?<=\b(?:hi|hello|hey|dear|thanks|morning)[\s,]*)/y;

interface Word {
  text: string;
  start: number;
  end: number;
}

function words(run: string, offset: number): Word[] {
  // A run without blanks is one word (RUN matched it as WORD): skip the second regex pass.
  if (!run.includes(" ") && !run.includes("\t")) {
    return [{ text: run, start: offset, end: offset + run.length }];
  }
  const out: Word[] = [];
  for (const m of run.matchAll(WORD_RE)) {
    out.push({ text: m[0], start: offset + m.index!, end: offset + m.index! + m[0].length });
  }
  return out;
}

/** Context words before (`ctx`, lower-cased) or after the name ending at `end`. */
function hasContext(text: string, ctx: string, end: number): boolean {
  return endsWith(ctx, CONTEXT) || CONTEXT_AFTER.test(text.slice(end, end + 24));
}

/**
 * Score of the name ws[i..j) (j exclusive), `f0` the lexicon flags of its first word; context
 * regexes run only when the score needs them.
 */
function score(text: string, ws: Word[], i: number, j: number, f0: number): number {
  const end = ws[j - 1].end;
  const ctx = before(text, ws[i].start, 40);
  const title = endsWith(ctx, TITLE);
  const first = (f0 & FIRST) !== 0;
  if (j - i >= 2) {
    if (title) return 0.9;
    const last = (wordFlags(ws[j - 1].text) & LAST) !== 0;
    if (!first) {
      for (let k = i; k < j; k++) {
        if ((wordFlags(ws[k].text) & (PLACE | FIRST | LAST)) === PLACE) return 0.3;
      }
      if (last) return hasContext(text, ctx, end) ? 0.8 : 0.5;
      return hasContext(text, ctx, end) ? 0.7 : 0.3;
    }
    return 0.85 + (last || hasContext(text, ctx, end) ? 0.1 : 0);
  }
  if (title) return 0.85;
  if (endsWith(ctx, GREETING)) return first ? 0.9 : 0.7;
  if (first && hasContext(text, ctx, end)) return 0.7;
  return first ? 0.45 : 0.2;
}

export const person: Recognizer = {
  types: ["PERSON"],
  find(text) {
    const out: Entity[] = [];
    scan(text, RUN, (m) => {
      const ws = words(m[0], m.index);
      let i = 0, j = ws.length, f0 = 0;
      for (; i < j; i++) {
        if (isStop(ws[i].text)) continue;
        f0 = wordFlags(ws[i].text);
        if ((f0 & COMMON) === 0) break;
      }
      while (j > i && isStop(ws[j - 1].text)) j--;
      if (i === j) return;
      out.push({
        type: "PERSON",
        start: ws[i].start,
        end: ws[j - 1].end,
        score: clamp(score(text, ws, i, j, f0)),
      });
    });
    return out;
  },
};
