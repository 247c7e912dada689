// US government identifiers: SSN, ITIN, driver's licence, passport.

import type { Entity } from "../types.ts";
import { validItin, validSsn } from "../validators.ts";
import { before, clamp, firstDigit, labelled, type Recognizer, scan } from "./common.ts";

const NINE = /(?<![\w-])(\d{3})([- ]?)(\d{2})\2(\d{4})(?![\w-])/g;
const SSN_CONTEXT = /\b(?:ssn|ss#|ss no|social security|social)\b/;
const ITIN_CONTEXT = /\b(?:itin|taxpayer|tax id|tin)\b/;

/** SSN and ITIN share a shape; the area number and group tell them apart. */
export const ssnItin: Recognizer = {
  types: ["US_SSN", "US_ITIN"],
  find(text) {
    const out: Entity[] = [];
    const digit = firstDigit(text);
    if (digit < 0) return out;
    scan(text, NINE, (m) => {
      const ctx = before(text, m.index, 40);
      const base = m[2] === "-" ? 0.8 : m[2] === " " ? 0.6 : 0.4;
      const start = m.index, end = m.index + m[0].length;
      if (validItin(m[0])) {
        const score = base + (ITIN_CONTEXT.test(ctx) ? 0.2 : 0);
        out.push({ type: "US_ITIN", start, end, score: clamp(score) });
      } else if (validSsn(m[0])) {
        const score = base + (SSN_CONTEXT.test(ctx) ? 0.2 : 0);
        out.push({ type: "US_SSN", start, end, score: clamp(score) });
      }
    }, digit);
    return out;
  },
};

const DL_LABEL =
  /\b(?:driver'?s'?\s+licen[cs]e|driving\s+licen[cs]e|DL|D\.L\.|licen[cs]e\s+plate)(?=[\s:#])/g;
const DL_ID = /[A-Z]\d{3}-\d{3}-\d{2}-\d{3}|[A-Z]{0,2}\d{5,13}/;

export const driverLicense: Recognizer = {
  types: ["US_DRIVER_LICENSE"],
  find(text) {
    if (firstDigit(text) < 0) return []; // every licence number form holds digits
    return labelled(text, DL_LABEL, DL_ID).map(([start, end]) => ({
      type: "US_DRIVER_LICENSE" as const,
      start,
      end,
      score: 0.85,
    }));
  },
};

const PASSPORT_LABEL = /\bpassport(?:\s+card)?/gi;
const PASSPORT_ID = /[A-Z]?\d{8,9}/;

export const passport: Recognizer = {
  types: ["US_PASSPORT"],
  find(text) {
    if (firstDigit(text) < 0) return []; // passport numbers are digits
    return labelled(text, PASSPORT_LABEL, PASSPORT_ID).map(([start, end]) => ({
      type: "US_PASSPORT" as const,
      start,
      end,
      score: 0.85,
    }));
  },
};
