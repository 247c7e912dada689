// Financial identifiers: payment cards (Luhn + issuer), IBAN (mod 97 + length), bank accounts.

import type { Entity } from "../types.ts";
import { IBAN_LENGTHS, validCard, validIban } from "../validators.ts";
import { before, firstDigit, labelled, type Recognizer, scan } from "./common.ts";

const CARD = /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g;
const CARD_CONTEXT = /\b(?:card|visa|mastercard|amex|american express|discover|credit|debit|cc)\b/;

/** More than one kind of separator (space and dash) between the digits. */
function mixedSeparators(s: string): boolean {
  return s.includes(" ") && s.includes("-");
}

export const creditCard: Recognizer = {
  types: ["CREDIT_CARD"],
  find(text) {
    const out: Entity[] = [];
    const digit = firstDigit(text);
    if (digit < 0) return out;
    scan(text, CARD, (m) => {
      if (mixedSeparators(m[0]) || !validCard(m[0])) return;
      const score = CARD_CONTEXT.test(before(text, m.index, 40)) ? 1 : 0.95;
      out.push({ type: "CREDIT_CARD", start: m.index, end: m.index + m[0].length, score });
    }, digit);
    return out;
  },
};

/** ASCII letter or digit (NaN, past the end of the text, is neither). */
function alnum(c: number): boolean {
  return (c >= 48 && c <= 57) || ((c | 32) >= 97 && (c | 32) <= 122);
}

const IBAN_START = /\b([A-Z]{2})\d{2}(?= ?[A-Z0-9])/g;

export const iban: Recognizer = {
  types: ["IBAN_CODE"],
  find(text) {
    const out: Entity[] = [];
    // Two letters, then the check digits.
    const digit = firstDigit(text);
    if (digit < 0) return out;
    scan(text, IBAN_START, (m) => {
      const want = IBAN_LENGTHS[m[1]];
      if (!want) return;
      // Take exactly `want` alphanumerics, allowing single spaces between groups.
      let i = m.index, n = 0;
      while (i < text.length && n < want) {
        const c = text.charCodeAt(i);
        if (alnum(c)) n++;
        else if (!(c === 32 && alnum(text.charCodeAt(i + 1)))) break;
        i++;
      }
      if (n !== want || alnum(text.charCodeAt(i))) return;
      if (!validIban(text.slice(m.index, i))) return;
      out.push({ type: "IBAN_CODE", start: m.index, end: i, score: 1 });
    }, Math.max(0, digit - 2));
    return out;
  },
};

const BANK_LABEL = /(?<!routing\s)\b(?:bank\s+)?(?:account|acct|a\/c)(?=[\s:#.])/gi;
const BANK_ID = /\d{8,17}/;

export const bankAccount: Recognizer = {
  types: ["US_BANK_NUMBER"],
  find(text) {
    if (firstDigit(text) < 0) return []; // account numbers are digits
    return labelled(text, BANK_LABEL, BANK_ID).map(([start, end]) => ({
      type: "US_BANK_NUMBER" as const,
      start,
      end,
      score: 0.85,
    }));
  },
};
