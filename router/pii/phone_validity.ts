// Phone number validity decided exactly as libphonenumber-js decides it
// (`parsePhoneNumberFromString(raw, "US")?.isValid()`), from its own "max" metadata, with every
// pattern compiled once.
//
// The library costs about 40 µs per call: it builds metadata objects and a new RegExp for every
// pattern it tests, and for +1 it tries up to 25 countries. This module follows the same steps
// (country calling code, national prefix, country by leading digits or number type, then the
// number types of that country) on precompiled patterns. Calling codes whose national prefix
// rules rewrite digits (AR, BR, MG, ...) and non-geographic codes (+800, ...) return null: the
// caller asks the library. tests/pii/phone_validity_test.ts compares the two on every area code,
// every country's example number and thousands of variants.

import { Metadata } from "libphonenumber-js/max";

// The parts of libphonenumber-js's Metadata class used here (its .d.ts declares less).
interface TypeDef {
  pattern(): string;
  possibleLengths(): number[] | undefined;
}
interface Meta {
  selectNumberingPlan(countryOrCallingCode: string): void;
  getCountryCodesForCallingCode(callingCode: string): string[] | undefined;
  hasCallingCode(callingCode: string): boolean | undefined;
  leadingDigits(): string | undefined;
  nationalNumberPattern(): string;
  possibleLengths(): number[] | undefined;
  nationalPrefixForParsing(): string | undefined;
  nationalPrefixTransformRule(): string | undefined;
  hasTypes(): boolean;
  type(name: string): TypeDef | undefined;
}

// getNumberType's types (only "is there any type" matters here).
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
// parse()'s bounds on the national (significant) number.
const MIN_NSN = 2, MAX_NSN = 17;

interface Country {
  /** Matches at the start when the number belongs to this country ("leading digits"). */
  leading: RegExp | null;
  national: RegExp;
  types: { re: RegExp; lengths: number[] | undefined }[];
  hasTypes: boolean;
  lengths: number[] | undefined;
}

interface CallingCode {
  /** The countries sharing the code, the main one first (metadata order). */
  countries: Country[];
  /** The main country's national prefix, anchored ("0" for +44, "1" for +1). */
  prefix: RegExp | null;
}

const META = new Metadata() as unknown as Meta;
const entirely = (pattern: string) => new RegExp(`^(?:${pattern})$`);

function compileCountry(code: string): Country {
  META.selectNumberingPlan(code);
  const leading = META.leadingDigits();
  const types: Country["types"] = [];
  for (const name of TYPES) {
    const t = META.type(name);
    if (t && t.pattern()) types.push({ re: entirely(t.pattern()), lengths: t.possibleLengths() });
  }
  return {
    leading: leading ? new RegExp(`^(?:${leading})`) : null,
    national: entirely(META.nationalNumberPattern()),
    types,
    hasTypes: META.hasTypes(),
    lengths: META.possibleLengths(),
  };
}

/** null: a non-geographic code, or national prefix rules with captures/rewrites. */
function compileCallingCode(cc: string): CallingCode | null {
  const countries = META.getCountryCodesForCallingCode(cc);
  if (!countries) return null;
  META.selectNumberingPlan(cc);
  const prefix = META.nationalPrefixForParsing();
  if (META.nationalPrefixTransformRule()) return null;
  if (prefix && new RegExp(`(?:${prefix})|`).exec("")!.length > 1) return null;
  return {
    countries: countries.map(compileCountry),
    prefix: prefix ? new RegExp(`^(?:${prefix})`) : null,
  };
}

// Compiled on first use; about 200 calling codes at most.
const CODES = new Map<string, CallingCode | null>();

function callingCode(cc: string): CallingCode | null {
  let c = CODES.get(cc);
  if (c === undefined) CODES.set(cc, c = compileCallingCode(cc));
  return c;
}

/** getNumberType(...) !== undefined for this country. */
function hasType(c: Country, nn: string): boolean {
  if (!c.national.test(nn)) return false;
  for (const t of c.types) {
    if (t.lengths && !t.lengths.includes(nn.length)) continue;
    if (t.re.test(nn)) return true;
  }
  return false;
}

/** isValidNumber for the country the library settled on. */
function validFor(c: Country, nn: string): boolean {
  return c.hasTypes ? hasType(c, nn) : c.national.test(nn);
}

/** getCountryByCallingCode: the only country, or the first by leading digits or number type. */
function countryOf(code: CallingCode, nn: string): Country | undefined {
  if (code.countries.length === 1) return code.countries[0];
  for (const c of code.countries) {
    if (c.leading) {
      if (c.leading.test(nn)) return c;
    } else if (hasType(c, nn)) return c;
  }
  return undefined;
}

/** checkNumberLength is not TOO_SHORT or INVALID_LENGTH. */
function possibleLength(len: number, lengths: number[] | undefined): boolean {
  if (!lengths) return true;
  if (lengths[0] === len) return true;
  if (lengths[0] > len) return false;
  if (lengths[lengths.length - 1] < len) return true; // TOO_LONG counts as possible here
  return lengths.indexOf(len, 1) >= 0;
}

/** extractNationalNumber: strip the national prefix unless the rest could not be a number. */
function nationalNumber(code: CallingCode, digits: string): string {
  const m = code.prefix?.exec(digits);
  if (!m) return digits;
  const rest = digits.slice(m[0].length);
  if (rest === digits) return digits;
  const main = code.countries[0];
  if (main.national.test(digits) && !main.national.test(rest)) return digits;
  if (main.lengths && !possibleLength(rest.length, (countryOf(code, rest) ?? main).lengths)) {
    return digits;
  }
  return rest;
}

/** Valid for calling code `code` with these digits after it (or null for the library). */
function validWithCode(code: CallingCode, digits: string): boolean {
  const nn = nationalNumber(code, digits);
  if (nn.length < MIN_NSN || nn.length > MAX_NSN) return false;
  return validFor(countryOf(code, nn) ?? code.countries[0], nn);
}

/**
 * Validity of a phone candidate from its digits (separators removed): `plus` when it was
 * written with a leading "+", else it is read as a US national number. `null`: ask
 * libphonenumber-js.
 */
export function phoneValidity(digits: string, plus: boolean): boolean | null {
  if (!plus) {
    // 011 is the US international dialling prefix: the library reads "011 683 6020" as
    // +683 6020 (Niue).
    if (digits.startsWith("011")) return null;
    const nanp = callingCode("1");
    if (!nanp) return null;
    // A leading 1 before ten more digits is the trunk prefix (or the +1 country code).
    const nn = digits.length === 11 && digits[0] === "1" ? digits.slice(1) : digits;
    if (nn.length !== 10) return null;
    return validFor(countryOf(nanp, nn) ?? nanp.countries[0], nn);
  }
  if (digits[0] === "0") return false;
  // The calling code is the shortest prefix (1 to 3 digits) the metadata knows.
  for (let i = 1; i <= 3 && i <= digits.length; i++) {
    const cc = digits.slice(0, i);
    if (!META.hasCallingCode(cc)) continue;
    const code = callingCode(cc);
    if (!code) return null;
    const rest = digits.slice(i);
    return rest === "" ? false : validWithCode(code, rest);
  }
  return false;
}
