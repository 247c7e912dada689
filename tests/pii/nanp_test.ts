// The precompiled NANP validator (router/pii/nanp.ts) must decide exactly as libphonenumber-js
// does: every area code, every written form the phone recognizer lets through.

import assert from "node:assert/strict";
import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import { nanpValidity } from "../../router/pii/nanp.ts";

/** Small seeded generator so a failure reproduces. */
function rng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
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

function compare(raws: string[]): { checked: number; valid: number; wrong: string[] } {
  let checked = 0, valid = 0;
  const wrong: string[] = [];
  for (const raw of raws) {
    const fast = nanpValidity(raw.replace(/\D/g, ""), raw[0] === "+");
    if (fast === null) continue;
    const lib = parsePhoneNumberFromString(raw, "US")?.isValid() === true;
    checked++;
    if (lib) valid++;
    if (fast !== lib) wrong.push(`${raw}: ours ${fast}, libphonenumber-js ${lib}`);
  }
  return { checked, valid, wrong };
}

Deno.test("nanp: agrees with libphonenumber-js on every area code and written form", () => {
  const r = rng(11);
  const digits = (n: number) => Array.from({ length: n }, () => r(10)).join("");
  const raws: string[] = [];
  for (let area = 0; area < 1000; area++) {
    const a = String(area).padStart(3, "0");
    for (const form of FORMS) raws.push(form(a, digits(3), digits(4)));
    // Exchange codes starting 0-9 (NANP exchanges may not start with 0 or 1).
    for (let e = 0; e < 10; e++) raws.push(`${a}${e}${digits(6)}`);
  }
  const res = compare(raws);
  assert.deepEqual(res.wrong.slice(0, 10), []);
  // All but the national numbers starting 011, which go to the library (next test).
  assert.ok(res.checked > raws.length * 0.99, `${res.checked} of ${raws.length} checked`);
  // The sample must hold plenty of both answers, or agreement says little.
  assert.ok(res.valid > 2000 && res.checked - res.valid > 2000, JSON.stringify(res));
});

Deno.test("nanp: national numbers starting 011 (US international prefix) go to the library", () => {
  // libphonenumber-js reads 011-683-6020 as +683 6020 (Niue), a valid number.
  assert.equal(nanpValidity("0116836020", false), null);
  assert.equal(parsePhoneNumberFromString("011-683-6020", "US")?.isValid(), true);
  const r = rng(13);
  const raws: string[] = [];
  for (let k = 0; k < 3000; k++) {
    raws.push("01" + Array.from({ length: 8 }, () => r(10)).join(""));
  }
  const res = compare(raws);
  assert.deepEqual(res.wrong.slice(0, 10), []);
  assert.ok(res.checked > 2000, `${res.checked} checked`);
});

Deno.test("nanp: +1 with too few or too many digits, other country codes left to the library", () => {
  const r = rng(12);
  const raws: string[] = [];
  for (let len = 4; len <= 14; len++) {
    for (let k = 0; k < 100; k++) {
      raws.push("+1" + Array.from({ length: len }, () => r(10)).join(""));
    }
  }
  const res = compare(raws);
  assert.deepEqual(res.wrong.slice(0, 10), []);
  assert.equal(res.checked, raws.length);
  assert.equal(nanpValidity("442071838750", true), null);
  assert.equal(nanpValidity("12124567890", false), true);
  assert.equal(nanpValidity("1124567890", false), false); // area codes never start with 0 or 1
  assert.equal(nanpValidity("2121567890", false), false); // nor do exchange codes
});
