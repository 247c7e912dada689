// Validity of North American (+1, NANP) phone numbers, decided exactly as libphonenumber-js
// decides it, from its own "max" metadata, with every pattern compiled once.
//
// `parsePhoneNumberFromString(raw, "US")?.isValid()` costs about 40 µs per call: for calling
// code 1 it tries up to 25 countries and builds a new RegExp for every pattern it tests. This
// module follows the same steps (getCountryByNationalNumber, then getNumberType for the country
// it picks) on precompiled patterns. tests/pii/nanp_test.ts checks that it agrees with
// libphonenumber-js on every area code and on formatted, +1 and 1-prefixed forms.

import { Metadata } from "libphonenumber-js/max";

// The parts of libphonenumber-js's Metadata class used here (its .d.ts declares less).
interface TypeDef {
  pattern(): string;
  possibleLengths(): number[] | undefined;
}
interface Plan {
  selectNumberingPlan(country: string): void;
  getCountryCodesForCallingCode(callingCode: string): string[] | undefined;
  leadingDigits(): string | undefined;
  nationalNumberPattern(): string;
  hasTypes(): boolean;
  type(name: string): TypeDef | undefined;
}

// getNumberType's order: FIXED_LINE, then the others (only "is there any type" matters here).
const TYPES = [
  "FIXED_LINE",
  "MOBILE",
  "PREMIUM_RATE",
  "TOLL_FREE",
  "SHARED_COST",
  "VOIP",
  "PERSONAL_NUMBER",
  "PAGER",
  "UAN",
  "VOICEMAIL",
];

interface Country {
  /** Matches at the start when the number belongs to this country ("leading digits"). */
  leading: RegExp | null;
  national: RegExp;
  types: { re: RegExp; lengths: number[] | undefined }[];
  hasTypes: boolean;
}

const entirely = (pattern: string) => new RegExp(`^(?:${pattern})$`);

function compile(): Country[] {
  const plan = new Metadata() as unknown as Plan;
  const out: Country[] = [];
  for (const code of plan.getCountryCodesForCallingCode("1") ?? []) {
    plan.selectNumberingPlan(code);
    const leading = plan.leadingDigits();
    const types: Country["types"] = [];
    for (const name of TYPES) {
      const t = plan.type(name);
      if (t && t.pattern()) types.push({ re: entirely(t.pattern()), lengths: t.possibleLengths() });
    }
    out.push({
      leading: leading ? new RegExp(`^(?:${leading})`) : null,
      national: entirely(plan.nationalNumberPattern()),
      types,
      hasTypes: plan.hasTypes(),
    });
  }
  if (out.length === 0) throw new Error("libphonenumber-js metadata has no +1 countries");
  return out;
}

const COUNTRIES = compile();

/** getNumberType(...) !== undefined for this country. */
function hasType(c: Country, nn: string): boolean {
  if (!c.national.test(nn)) return false;
  for (const t of c.types) {
    if (t.lengths && !t.lengths.includes(nn.length)) continue;
    if (t.re.test(nn)) return true;
  }
  return false;
}

/** isValidNumber for the country libphonenumber-js settled on. */
function validFor(c: Country, nn: string): boolean {
  return c.hasTypes ? hasType(c, nn) : c.national.test(nn);
}

/** A valid NANP number, given its 10-digit national (significant) number. */
export function validNanpNational(nn: string): boolean {
  if (nn.length !== 10) return false;
  for (const c of COUNTRIES) {
    if (c.leading) {
      if (c.leading.test(nn)) return validFor(c, nn);
    } else if (hasType(c, nn)) return true;
  }
  return false;
}

/**
 * For a phone candidate's digits (separators removed): `true`/`false` when it is a +1 or a US
 * national number, `null` when another country code needs the full library.
 * `plus`: the candidate was written with a leading "+".
 */
export function nanpValidity(digits: string, plus: boolean): boolean | null {
  if (plus && digits[0] !== "1") return null;
  // 011 is the US international dialling prefix: libphonenumber-js reads "011 683 6020" as
  // +683 6020 (Niue), so such numbers go to the library.
  if (!plus && digits.startsWith("011")) return null;
  // "+1" then the number, or a national number with an optional "1" trunk prefix: either way
  // a leading 1 before ten more digits is stripped, and only ten digits can be valid.
  const rest = plus ? digits.slice(1) : digits;
  const nn = rest.length === 11 && rest[0] === "1" ? rest.slice(1) : rest;
  return validNanpNational(nn);
}
