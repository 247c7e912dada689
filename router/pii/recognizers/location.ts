// Places: US street addresses (number, street, suffix, optional unit, city, state, ZIP) and
// city names the compromise lexicon knows, scored up after "in", "at", "lives in", ...

import type { Entity } from "../types.ts";
import { FIRST, isPlace, PLACE, wordFlags } from "../lexicon.ts";
import { before, endsWith, firstDigit, type Recognizer, scan } from "./common.ts";

const SUFFIXES =
  "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl";
const STATES =
  "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY";
const CAP = String.raw`\p{Lu}[\p{L}'-]*`;
const ADDRESS = new RegExp(
  String
    .raw`(?<![\p{L}\p{N}])\d{1,6}[ \t]+(?:(?:[NSEW]\.?|North|South|East|West)[ \t]+)?(?:${CAP}[ \t]+){1,3}(?:${SUFFIXES})\b\.?` +
    String.raw`(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|#)\.?[ \t]*[\w-]+)?` +
    String
      .raw`(?:,[ \t]*${CAP}(?:[ \t]${CAP})?(?=,|\s+(?:${STATES})\b|[.\n;]|$)(?:,?[ \t]*(?:${STATES})\b(?:[ \t]+\d{5}(?:-\d{4})?)?)?)?`,
  "gu",
);
const CITY_WORD = /(?<![\p{L}\p{N}])\p{Lu}\p{Ll}+(?:[ \t]\p{Lu}\p{Ll}+)?(?![\p{L}\p{N}])/gu;
const PLACE_CONTEXT =
  /(?<=\b(?:in|at|from|near|to|visit|visiting|lives in|located in|moved to)\s+)/y;
const STATE_AFTER = new RegExp(`^,\\s*(?:${STATES})\\b`);

export const location: Recognizer = {
  types: ["LOCATION"],
  find(text) {
    const out: Entity[] = [];
    // Addresses start with the house number.
    const digit = firstDigit(text);
    if (digit >= 0) {
      scan(text, ADDRESS, (m) => {
        out.push({ type: "LOCATION", start: m.index, end: m.index + m[0].length, score: 0.85 });
      }, digit);
    }
    scan(text, CITY_WORD, (m) => {
      const w = m[0];
      let end = m.index + w.length;
      const f = wordFlags(w);
      let known = (f & PLACE) !== 0;
      if (!known && w.includes(" ")) {
        const first = w.slice(0, w.search(/[ \t]/));
        if (!isPlace(first)) return;
        known = true;
        end = m.index + first.length;
      }
      // ", CA" after the word; looked at in the next 5 characters only.
      const stateAfter = text.charCodeAt(end) === 44 && STATE_AFTER.test(text.slice(end, end + 5));
      const nameToo = (f & FIRST) !== 0;
      if (!known && !stateAfter && !nameToo) return;
      const ctx = !stateAfter && endsWith(before(text, m.index, 16), PLACE_CONTEXT);
      if (!known && !stateAfter && !(nameToo && ctx)) return;
      const score = stateAfter || ctx ? 0.85 : nameToo ? 0.3 : 0.6;
      out.push({ type: "LOCATION", start: m.index, end, score });
    });
    return out;
  },
};
