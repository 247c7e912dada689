// Calendar dates (with an optional time): numeric US and ISO forms and written month names.
// Scored higher next to birth-date words; impossible dates (13/45/2020) are not dates.

import type { Entity } from "../types.ts";
import { validDate } from "../validators.ts";
import { before, firstDigit, type Recognizer, scan } from "./common.ts";

const MONTH_NAMES =
  "Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?";
const TIME = String
  .raw`(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:\s?[AaPp][Mm]|Z|[+-]\d{2}:?\d{2})?)?`;
const US = new RegExp(
  String.raw`(?<![\w/.-])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})${TIME}(?![\w/])`,
  "g",
);
const ISO = new RegExp(String.raw`(?<![\w.-])(\d{4})-(\d{2})-(\d{2})${TIME}(?![\w-])`, "g");
const MDY = new RegExp(
  String.raw`\b(${MONTH_NAMES})\.? (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})\b`,
  "g",
);
const DMY = new RegExp(
  String.raw`\b(\d{1,2})(?:st|nd|rd|th)? (${MONTH_NAMES})\.?,? (\d{4})\b`,
  "g",
);
// Every written month starts with one of these: one quick test skips both month-name scans.
const MONTH_HINT = /Jan|Feb|Ma[ry]|Apr|Ju[nl]|Aug|Sep|Oct|Nov|Dec/;
const DOB_CONTEXT = /\b(?:dob|d\.o\.b|born|birth|birthday|date of birth)\b/;

function monthIndex(name: string): number {
  return [
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
  ].indexOf(name.slice(0, 3).toLowerCase()) + 1;
}

export const dateTime: Recognizer = {
  types: ["DATE_TIME"],
  find(text) {
    const out: Entity[] = [];
    const push = (m: RegExpExecArray, y: number, mo: number, d: number) => {
      if (!validDate(y, mo, d)) return;
      const score = DOB_CONTEXT.test(before(text, m.index, 30)) ? 0.95 : 0.85;
      out.push({ type: "DATE_TIME", start: m.index, end: m.index + m[0].length, score });
    };
    // Every form holds digits; the numeric ones and DMY start with one.
    const digit = firstDigit(text);
    if (digit < 0) return out;
    if (text.includes("/")) {
      scan(text, US, (m) => {
        const y = Number(m[3].length === 2 ? "20" + m[3] : m[3]);
        push(m, y, Number(m[1]), Number(m[2]));
      }, digit);
    }
    scan(text, ISO, (m) => push(m, Number(m[1]), Number(m[2]), Number(m[3])), digit);
    if (MONTH_HINT.test(text)) {
      scan(text, MDY, (m) => push(m, Number(m[3]), monthIndex(m[1]), Number(m[2])));
      scan(text, DMY, (m) => push(m, Number(m[3]), monthIndex(m[2]), Number(m[1])), digit);
    }
    return out;
  },
};
