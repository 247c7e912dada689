// Contact details: e-mail addresses, URLs, IP addresses (v4/v6), phone numbers.

import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import type { Entity } from "../types.ts";
import { validIpv4, validIpv6 } from "../validators.ts";
import { phoneValidity } from "../phone_validity.ts";
import { before, clamp, endsWith, firstDigit, type Recognizer, scan } from "./common.ts";

const LOCAL_CHAR = /[A-Za-z0-9._%+-]/;
const DOMAIN = /(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b/y;

export const email: Recognizer = {
  types: ["EMAIL_ADDRESS"],
  find(text) {
    // From each "@": the local part to the left, the domain (with a letter TLD) to the right.
    const out: Entity[] = [];
    let lastEnd = 0;
    for (let at = text.indexOf("@"); at >= 0; at = text.indexOf("@", at + 1)) {
      let start = at;
      while (start > lastEnd && LOCAL_CHAR.test(text[start - 1])) start--;
      while (text[start] === ".") start++;
      if (start === at) continue;
      DOMAIN.lastIndex = at + 1;
      const d = DOMAIN.exec(text);
      if (!d) continue;
      lastEnd = at + 1 + d[0].length;
      out.push({ type: "EMAIL_ADDRESS", start, end: lastEnd, score: 0.95 });
    }
    return out;
  },
};

const URL_RE = /\b(?:(?:https?|ftp):\/\/|www\.)[^\s<>"'`]+/gi;

export const url: Recognizer = {
  types: ["URL"],
  find(text) {
    const out: Entity[] = [];
    scan(text, URL_RE, (m) => {
      let end = m.index + m[0].length;
      while (end > m.index && /[.,;:!?)\]}]/.test(text[end - 1])) end--;
      out.push({ type: "URL", start: m.index, end, score: 0.85 });
    });
    return out;
  },
};

const IPV4 = /(?<![\w.-])(?:\d{1,3}\.){3}\d{1,3}(?![\w-]|\.\d)/g;
const IPV6 =
  /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])/g;
// Every IPv6 match holds ":", at most 4 hex digits, ":" with at most 4 hex digits before it.
const IPV6_HINT = /:[0-9A-Fa-f]{0,4}:/;
const VERSION_CONTEXT = /(?<=(?:version|release|build|firmware|tag|ver\.?|v)[\s:="']*)/y;

export const ipAddress: Recognizer = {
  types: ["IP_ADDRESS"],
  find(text) {
    const out: Entity[] = [];
    const digit = firstDigit(text);
    if (digit >= 0) {
      scan(text, IPV4, (m) => {
        if (!validIpv4(m[0])) return;
        const score = endsWith(before(text, m.index, 24), VERSION_CONTEXT) ? 0.3 : 0.9;
        out.push({ type: "IP_ADDRESS", start: m.index, end: m.index + m[0].length, score });
      }, digit);
    }
    const hint = IPV6_HINT.exec(text);
    if (!hint) return out;
    scan(text, IPV6, (m) => {
      if (!/[0-9A-Fa-f]/.test(m[0]) || !validIpv6(m[0])) return;
      out.push({ type: "IP_ADDRESS", start: m.index, end: m.index + m[0].length, score: 0.9 });
    }, Math.max(0, hint.index - 4));
    return out;
  },
};

const PHONE_CONTEXT =
  /\b(?:phone|tel|telephone|call|calls|called|cell|mobile|fax|contact|reach|callback|text|whatsapp|ph)\b/;

// Candidates: digit groups with phone-like separators, an optional +country code and an
// optional parenthesised area code. libphonenumber-js then decides validity (per-country
// number plans); running its own text scanner over whole prompts was 20x slower.
const PHONE_CANDIDATE =
  /(?<![\w#/.+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?![\w/-]|[.-]\d)/g;

/** Number of ASCII digits in `s`. */
function digitCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) n++;
  }
  return n;
}

export const phone: Recognizer = {
  types: ["PHONE_NUMBER"],
  find(text) {
    const out: Entity[] = [];
    // A candidate starts with a digit, or with "+" or "(" right before one.
    const digit = firstDigit(text);
    if (digit < 0) return out;
    scan(text, PHONE_CANDIDATE, (m) => {
      const raw = m[0];
      const plus = raw[0] === "+";
      const digits = digitCount(raw);
      // Without a +country code only US/NANP national numbers (10 digits, or 11 with a 1).
      if (
        plus ? digits < 7 || digits > 15 : digits !== 10 && !(digits === 11 && /^\(?1/.test(raw))
      ) {
        return;
      }
      // libphonenumber-js's own rules on precompiled patterns (router/pii/phone_validity.ts);
      // the few it leaves open go to the library itself.
      const valid = phoneValidity(raw.replace(/\D/g, ""), plus) ??
        parsePhoneNumberFromString(raw, "US")?.isValid();
      if (!valid) return;
      const formatted = /[\s().+-]/.test(raw);
      const context = PHONE_CONTEXT.test(before(text, m.index, 40));
      const score = (formatted ? 0.75 : 0.4) + (context ? 0.2 : 0);
      out.push({
        type: "PHONE_NUMBER",
        start: m.index,
        end: m.index + raw.length,
        score: clamp(score),
      });
    }, Math.max(0, digit - 1));
    return out;
  },
};
