// Detector unit tests: a true and a false positive for every entity type, validators, offsets.

import assert from "node:assert/strict";
import { detect } from "../../router/pii/detect.ts";
import type { EntityType } from "../../router/pii/types.ts";
import {
  luhn,
  validDea,
  validIban,
  validIpv6,
  validItin,
  validNpi,
  validSsn,
} from "../../router/pii/validators.ts";

/** The values of `type` that detect() finds in text. */
function found(text: string, type: EntityType): string[] {
  return detect(text).filter((e) => e.type === type).map((e) => text.slice(e.start, e.end));
}

Deno.test("validators: SSN area, group and serial rules", () => {
  assert.equal(validSsn("536-22-1234"), true);
  for (const bad of ["000-22-1234", "666-22-1234", "912-22-1234", "536-00-1234", "536-22-0000"]) {
    assert.equal(validSsn(bad), false, bad);
  }
  assert.equal(validItin("912-78-1234"), true);
  assert.equal(validItin("912-45-1234"), false);
});

Deno.test("validators: Luhn, mod 97, NPI (80840 prefix), DEA checksum, IPv6", () => {
  assert.equal(luhn("4111111111111111"), true);
  assert.equal(luhn("4111111111111112"), false);
  assert.equal(validIban("DE89 3704 0044 0532 0130 00"), true);
  assert.equal(validIban("DE89 3704 0044 0532 0130 01"), false); // checksum
  assert.equal(validIban("DE89370400440532013"), false); // length for DE
  assert.equal(validNpi("1234567893"), true);
  assert.equal(validNpi("1234567890"), false);
  assert.equal(validDea("AB1234563"), true); // 1+3+5 + 2*(2+4+6) = 33 -> 3
  assert.equal(validDea("AB1234564"), false);
  assert.equal(validIpv6("2001:db8::8a2e:370:7334"), true);
  assert.equal(validIpv6("10:30:00"), false);
});

const CASES: [EntityType, string, string, string][] = [
  // [type, text with a true positive, the value, text with a look-alike that must not match]
  [
    "EMAIL_ADDRESS",
    "write to jane.doe@example.org today",
    "jane.doe@example.org",
    "ping @channel about v2",
  ],
  ["PHONE_NUMBER", "call me at (415) 867-5309", "(415) 867-5309", "order ORD-2019-449133 shipped"],
  ["US_SSN", "SSN 536-22-1234 on file", "536-22-1234", "SSN 666-22-1234 on file"],
  ["US_ITIN", "ITIN 912-78-1234", "912-78-1234", "ref 912-45-1234"],
  ["CREDIT_CARD", "card 4111 1111 1111 1111", "4111 1111 1111 1111", "card 4111 1111 1111 1112"],
  [
    "IBAN_CODE",
    "IBAN DE89 3704 0044 0532 0130 00.",
    "DE89 3704 0044 0532 0130 00",
    "IBAN DE89 3704 0044 0532 0130 01.",
  ],
  ["IP_ADDRESS", "from 203.0.113.7 yesterday", "203.0.113.7", "version 10.2.3.4 and 300.1.1.1"],
  [
    "URL",
    "see https://portal.example.org/p/42.",
    "https://portal.example.org/p/42",
    "see example dot org",
  ],
  ["DATE_TIME", "DOB 03/14/1962", "03/14/1962", "ratio 13/45/2020"],
  [
    "LOCATION",
    "She lives at 42 Elm Street, Boston, MA 02108.",
    "42 Elm Street, Boston, MA 02108",
    "We had 42 apples.",
  ],
  ["US_DRIVER_LICENSE", "driver's license D1234567", "D1234567", "version D1234567"],
  ["US_PASSPORT", "passport number 123456789", "123456789", "invoice 123456789"],
  ["US_BANK_NUMBER", "account number is 00123456789", "00123456789", "routing number 021000021"],
  ["MEDICAL_RECORD_NUMBER", "MRN: MR1234567", "MR1234567", "MR. Smith was seen"],
  ["US_NPI", "NPI 1234567893", "1234567893", "NPI 1234567890"],
  ["US_DEA", "DEA AB1234563", "AB1234563", "DEA AB1234564"],
  ["MEDICAL_LICENSE", "medical license MD123456", "MD123456", "driver's license policy"],
  ["HEALTH_PLAN_ID", "member ID XYZ123456789", "XYZ123456789", "member of the team"],
  [
    "SECRET",
    "key = ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "commit 3f9a2b1c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a",
  ],
  [
    "PERSON",
    "Patient Maria Gonzalez was admitted.",
    "Maria Gonzalez",
    "The Chief Complaint was pain.",
  ],
];

for (const [type, text, value, negative] of CASES) {
  Deno.test(`${type}: finds the value and not the look-alike`, () => {
    assert.deepEqual(found(text, type), [value]);
    assert.deepEqual(found(negative, type), []);
  });
}

Deno.test("SECRET: known prefixes, JWT, PEM, entropy next to a key name", () => {
  const jwt =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
  const pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----";
  for (
    const s of [
      "sk-proj-Ab3dEf5hIj7lMn9pQr1tUv3xYz5bCd7fGh9j",
      "sk-ant-api03-" + "a1".repeat(45),
      "AKIAIOSFODNN7EXAMPLE",
      "xoxb-123456789012-1234567890123-abcdefABCDEF",
      "hf_abcdefghijklmnopqrstuvwxyz12345678",
      "glpat-abcdEFGH1234ijklMNOP",
      jwt,
      pem,
    ]
  ) assert.deepEqual(found(`x = "${s}"`, "SECRET"), [s], s);
  assert.deepEqual(found('api_key: "Zq8vN2rT5wLx9KcP3mHf7JdA"', "SECRET"), [
    "Zq8vN2rT5wLx9KcP3mHf7JdA",
  ]);
  assert.deepEqual(found("the task-force-sprint-planning-meeting", "SECRET"), []);
  assert.deepEqual(found("request 550e8400-e29b-41d4-a716-446655440000", "SECRET"), []);
});

Deno.test("scores reflect validation: checksum-valid beats a bare pattern", () => {
  const [card] = detect("4111 1111 1111 1111");
  const [ssnBare] = detect("536221234", { minScore: 0 });
  assert.equal(card.type, "CREDIT_CARD");
  assert.ok(card.score >= 0.95);
  assert.equal(ssnBare.type, "US_SSN");
  assert.ok(ssnBare.score < card.score);
  const withContext = detect("SSN 536-22-1234")[0].score;
  const without = detect("ref 536-22-1234")[0].score;
  assert.ok(withContext > without);
});

Deno.test("offsets are JS string indices with non-ASCII text before the entity", () => {
  const text = "😀 héllo 🇩🇪 — mail jane@example.org or call (415) 867-5309";
  const es = detect(text);
  const email = es.find((e) => e.type === "EMAIL_ADDRESS")!;
  const phone = es.find((e) => e.type === "PHONE_NUMBER")!;
  assert.equal(text.slice(email.start, email.end), "jane@example.org");
  assert.equal(text.slice(phone.start, phone.end), "(415) 867-5309");
});

Deno.test("options: minScore and types filter; results never overlap", () => {
  const text = "Dr. Alan Whitfield, NPI 1234567893, card 4111 1111 1111 1111, 536-22-1234";
  assert.deepEqual(detect(text, { types: ["US_NPI"] }).map((e) => e.type), ["US_NPI"]);
  assert.ok(detect(text, { minScore: 0.99 }).every((e) => e.score >= 0.99));
  const es = detect(text, { minScore: 0 });
  for (let i = 1; i < es.length; i++) assert.ok(es[i - 1].end <= es[i].start);
});

Deno.test("context words still count when lower-casing changes the text's length (İ)", () => {
  // "İ".toLowerCase() is two UTF-16 units, so context windows cannot be cut from a lower-cased
  // copy of the whole text; the result must not depend on it.
  for (const prefix of ["", "İİİ "]) {
    const text = `${prefix}Dr. Zorblat Quenby called 555-867-5309 (phone), SSN 536-22-1234.`;
    assert.deepEqual(found(text, "PERSON"), ["Zorblat Quenby"], prefix);
    assert.deepEqual(found(text, "US_SSN"), ["536-22-1234"], prefix);
    const ssn = detect(text).find((e) => e.type === "US_SSN");
    assert.equal(ssn?.score, 1, `SSN context raises the score (${prefix})`);
  }
});

Deno.test("numeric scans start at the first digit: identifiers that begin before it still count", () => {
  // Each of these starts one or two characters before its first digit (+, letters of an IBAN or
  // DEA number, a 9 as the DEA's second letter) and is the first number in its text.
  assert.deepEqual(found("call +44 20 7946 0958 now", "PHONE_NUMBER"), ["+44 20 7946 0958"]);
  assert.deepEqual(found("IBAN DE89 3704 0044 0532 0130 00.", "IBAN_CODE"), [
    "DE89 3704 0044 0532 0130 00",
  ]);
  assert.deepEqual(found("DEA AB1234563", "US_DEA"), ["AB1234563"]);
  assert.deepEqual(found("DEA A91234563", "US_DEA"), ["A91234563"]);
  // No digit at all: names, e-mail addresses and URLs are still found, numeric types are not.
  const text = "Dear Maria Gonzalez, write to maria@example.org or see https://example.org/help.";
  assert.deepEqual(detect(text).map((e) => e.type), ["PERSON", "EMAIL_ADDRESS", "URL"]);
});
