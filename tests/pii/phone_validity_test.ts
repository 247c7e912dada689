// The precompiled phone validator (router/pii/phone_validity.ts) must decide exactly as
// libphonenumber-js does: every US area code and written form, every country's example number
// and variants of it (other digits, one digit more or less, a national prefix after the code).

import assert from "node:assert/strict";
import { getCountryCallingCode, parsePhoneNumberFromString } from "libphonenumber-js/max";
import type { CountryCode } from "libphonenumber-js/max";
import examples from "libphonenumber-js/mobile/examples";
import { phoneValidity } from "../../router/pii/phone_validity.ts";

/** Small seeded generator so a failure reproduces. */
function rng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
}

function digitsOf(r: (n: number) => number, n: number): string {
  return Array.from({ length: n }, () => r(10)).join("");
}

const FORMS: ((a: string, b: string, c: string) => string)[] = [
  (a, b, c) => `${a}${b}${c}`,
  (a, b, c) => `(${a}) ${b}-${c}`,
  (a, b, c) => `${a}-${b}-${c}`,
  (a, b, c) => `${a}.${b}.${c}`,
  (a, b, c) => `1-${a}-${b}-${c}`,
  (a, b, c) => `1${a}${b}${c}`,
  (a, b, c) => `(1${a}) ${b}-${c}`,
  (a, b, c) => `+1 ${a} ${b} ${c}`,
  (a, b, c) => `+1 (${a}) ${b}-${c}`,
  (a, b, c) => `+1${a}${b}${c}`,
  (a, b, c) => `+11${a}${b}${c}`,
];

interface Comparison {
  checked: number;
  valid: number;
  wrong: string[];
}

/** Our answer against the library's for every raw candidate we answer for. */
function compare(raws: string[]): Comparison {
  let checked = 0, valid = 0;
  const wrong: string[] = [];
  for (const raw of raws) {
    const ours = phoneValidity(raw.replace(/\D/g, ""), raw[0] === "+");
    if (ours === null) continue;
    const lib = parsePhoneNumberFromString(raw, "US")?.isValid() === true;
    checked++;
    if (lib) valid++;
    if (ours !== lib) wrong.push(`${raw}: ours ${ours}, libphonenumber-js ${lib}`);
  }
  return { checked, valid, wrong };
}

Deno.test("phone validity: agrees with libphonenumber-js on every US area code and written form", () => {
  const r = rng(11);
  const raws: string[] = [];
  for (let area = 0; area < 1000; area++) {
    const a = String(area).padStart(3, "0");
    for (const form of FORMS) raws.push(form(a, digitsOf(r, 3), digitsOf(r, 4)));
    // Exchange codes starting 0-9 (NANP exchanges may not start with 0 or 1).
    for (let e = 0; e < 10; e++) raws.push(`${a}${e}${digitsOf(r, 6)}`);
  }
  const res = compare(raws);
  assert.deepEqual(res.wrong.slice(0, 10), []);
  // All but the national numbers starting 011, which go to the library (test below).
  assert.ok(res.checked > raws.length * 0.99, `${res.checked} of ${raws.length} checked`);
  // The sample must hold plenty of both answers, or agreement says little.
  assert.ok(res.valid > 2000 && res.checked - res.valid > 2000, JSON.stringify(res));
});

Deno.test("phone validity: national numbers starting 011 (US international prefix) go to the library", () => {
  // libphonenumber-js reads 011-683-6020 as +683 6020 (Niue), a valid number.
  assert.equal(phoneValidity("0116836020", false), null);
  assert.equal(parsePhoneNumberFromString("011-683-6020", "US")?.isValid(), true);
  const r = rng(13);
  const raws = Array.from({ length: 3000 }, () => "01" + digitsOf(r, 8));
  const res = compare(raws);
  assert.deepEqual(res.wrong.slice(0, 10), []);
  assert.ok(res.checked > 2000, `${res.checked} checked`);
});

Deno.test("phone validity: agrees with libphonenumber-js on every country's numbers and variants", () => {
  const r = rng(14);
  const raws: string[] = [];
  for (const [country, example] of Object.entries(examples as Record<string, string>)) {
    const cc = getCountryCallingCode(country as CountryCode);
    const variants = [example, "0" + example, example.slice(0, -1), example + r(10)];
    for (let k = 0; k < 6; k++) {
      // Same length, last digits replaced: valid or not by the country's number plan.
      const keep = Math.max(1, example.length - 1 - r(4));
      variants.push(example.slice(0, keep) + digitsOf(r, example.length - keep));
    }
    for (let k = 0; k < 6; k++) variants.push(digitsOf(r, 4 + r(10)));
    for (const v of variants) {
      raws.push(`+${cc}${v}`, `+${cc} ${v.slice(0, 3)} ${v.slice(3)}`);
    }
  }
  // Codes with no country behind them, 0 after the plus, four-digit "codes".
  for (let k = 0; k < 2000; k++) raws.push("+" + digitsOf(r, 7 + r(9)));
  const res = compare(raws);
  assert.deepEqual(res.wrong.slice(0, 10), []);
  assert.ok(res.checked > raws.length * 0.9, `${res.checked} of ${raws.length} checked`);
  assert.ok(res.valid > 1000 && res.checked - res.valid > 1000, JSON.stringify(res));
});

Deno.test("phone validity: +1 with too few or too many digits; rewriting prefixes go to the library", () => {
  const r = rng(12);
  const raws: string[] = [];
  for (let len = 4; len <= 14; len++) {
    for (let k = 0; k < 100; k++) raws.push("+1" + digitsOf(r, len));
  }
  const res = compare(raws);
  assert.deepEqual(res.wrong.slice(0, 10), []);
  assert.equal(res.checked, raws.length);
  assert.equal(phoneValidity("12124567890", false), true);
  assert.equal(phoneValidity("1124567890", false), false); // area codes never start with 0 or 1
  assert.equal(phoneValidity("2121567890", false), false); // nor do exchange codes
  assert.equal(phoneValidity("442079460958", true), true);
  // Argentina's national prefix rules rewrite digits; +800 has no country: the library decides.
  assert.equal(phoneValidity("5491123456789", true), null);
  assert.equal(phoneValidity("80012345678", true), null);
});
