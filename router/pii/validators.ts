// Checksums and structural rules that turn a pattern match into a validated identifier.
// Each function takes the matched text (separators allowed) and answers yes or no.

/** Only the digits of `s`. */
export function digitsOf(s: string): string {
  return s.replace(/\D/g, "");
}

/** Luhn (mod 10) over a digit string. */
export function luhn(digits: string): boolean {
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** US SSN area/group/serial rules (SSA): no 000, 666 or 9xx area, no 00 group, no 0000 serial. */
export function validSsn(s: string): boolean {
  const d = digitsOf(s);
  if (d.length !== 9) return false;
  const area = d.slice(0, 3), group = d.slice(3, 5), serial = d.slice(5);
  if (area === "000" || area === "666" || area[0] === "9") return false;
  if (group === "00" || serial === "0000") return false;
  // Numbers the SSA never issues or that were publicised (Woolworth wallet card).
  if (d === "078051120" || d === "219099999") return false;
  return !/^(\d)\1{8}$/.test(d) && d !== "123456789";
}

/** US ITIN: 9xx area, group 50-65, 70-88, 90-92 or 94-99 (IRS). */
export function validItin(s: string): boolean {
  const d = digitsOf(s);
  if (d.length !== 9 || d[0] !== "9") return false;
  const g = Number(d.slice(3, 5));
  return (g >= 50 && g <= 65) || (g >= 70 && g <= 88) || (g >= 90 && g <= 92) ||
    (g >= 94 && g <= 99);
}

/** Card issuer by IIN prefix and length; null when no known issuer matches. */
export function cardIssuer(digits: string): string | null {
  const n = digits.length;
  const p2 = Number(digits.slice(0, 2)), p4 = Number(digits.slice(0, 4));
  const p6 = Number(digits.slice(0, 6));
  if (digits[0] === "4" && (n === 13 || n === 16 || n === 19)) return "visa";
  if (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n === 16) return "mastercard";
  if ((p2 === 34 || p2 === 37) && n === 15) return "amex";
  if (
    (digits.startsWith("6011") || digits.startsWith("65") ||
      (p6 >= 622126 && p6 <= 622925) || (Number(digits.slice(0, 3)) >= 644 &&
        Number(digits.slice(0, 3)) <= 649)) && (n === 16 || n === 19)
  ) return "discover";
  if ((p4 >= 3528 && p4 <= 3589) && n >= 16 && n <= 19) return "jcb";
  if (
    (p2 === 36 || p2 === 38 || (Number(digits.slice(0, 3)) >= 300 &&
      Number(digits.slice(0, 3)) <= 305)) && n === 14
  ) return "diners";
  if (digits.startsWith("62") && n >= 16 && n <= 19) return "unionpay";
  return null;
}

export function validCard(s: string): boolean {
  const d = digitsOf(s);
  return d.length >= 13 && d.length <= 19 && cardIssuer(d) !== null && luhn(d) &&
    !/^(\d)\1+$/.test(d);
}

/** IBAN lengths by country (SWIFT IBAN registry). */
export const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24,
  AE: 23,
  AL: 28,
  AT: 20,
  AZ: 28,
  BA: 20,
  BE: 16,
  BG: 22,
  BH: 22,
  BR: 29,
  BY: 28,
  CH: 21,
  CR: 22,
  CY: 28,
  CZ: 24,
  DE: 22,
  DK: 18,
  DO: 28,
  EE: 20,
  EG: 29,
  ES: 24,
  FI: 18,
  FO: 18,
  FR: 27,
  GB: 22,
  GE: 22,
  GI: 23,
  GL: 18,
  GR: 27,
  GT: 28,
  HR: 21,
  HU: 28,
  IE: 22,
  IL: 23,
  IQ: 23,
  IS: 26,
  IT: 27,
  JO: 30,
  KW: 30,
  KZ: 20,
  LB: 28,
  LC: 32,
  LI: 21,
  LT: 20,
  LU: 20,
  LV: 21,
  MC: 27,
  MD: 24,
  ME: 22,
  MK: 19,
  MR: 27,
  MT: 31,
  MU: 30,
  NL: 18,
  NO: 15,
  PK: 24,
  PL: 28,
  PS: 29,
  PT: 25,
  QA: 29,
  RO: 24,
  RS: 22,
  SA: 24,
  SC: 31,
  SE: 24,
  SI: 19,
  SK: 24,
  SM: 27,
  ST: 25,
  SV: 28,
  TL: 23,
  TN: 24,
  TR: 26,
  UA: 29,
  VA: 22,
  VG: 24,
  XK: 20,
};

/** ISO 13616 IBAN: known country, its length, mod 97 == 1. Spaces allowed. */
export function validIban(s: string): boolean {
  const iban = s.replace(/[\s-]/g, "").toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(iban)) return false;
  if (IBAN_LENGTHS[iban.slice(0, 2)] !== iban.length) return false;
  const moved = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (const ch of moved) {
    const v = ch >= "A" ? String(ch.charCodeAt(0) - 55) : ch;
    for (const c of v) rem = (rem * 10 + (c.charCodeAt(0) - 48)) % 97;
  }
  return rem === 1;
}

/** US NPI: 10 digits starting 1 or 2, Luhn over "80840" + the number. */
export function validNpi(s: string): boolean {
  const d = digitsOf(s);
  return d.length === 10 && (d[0] === "1" || d[0] === "2") && luhn("80840" + d);
}

/**
 * US DEA registration number: 2 letters + 7 digits; (d1+d3+d5) + 2*(d2+d4+d6), last digit of
 * that sum equals d7. First letter is a registrant type.
 */
export function validDea(s: string): boolean {
  const m = /^([ABCDEFGHJKLMPRSTUX])([A-Z9])(\d{7})$/.exec(s.toUpperCase());
  if (!m) return false;
  const d = m[3].split("").map(Number);
  const sum = d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5]);
  return sum % 10 === d[6];
}

/** ABA routing number checksum (3-7-1 weights). */
export function validAbaRouting(s: string): boolean {
  const d = digitsOf(s);
  if (d.length !== 9) return false;
  const w = [3, 7, 1, 3, 7, 1, 3, 7, 1];
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += w[i] * (d.charCodeAt(i) - 48);
  return sum % 10 === 0 && sum > 0;
}

/** IPv4 dotted quad with each octet 0-255 and no leading zeros. */
export function validIpv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 &&
    parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

/** IPv6 per RFC 4291 text forms (with :: compression and an optional embedded IPv4 tail). */
export function validIpv6(s: string): boolean {
  let text = s;
  let groupsNeeded = 8;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".")) {
    if (!validIpv4(text.slice(lastColon + 1))) return false;
    text = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const groups = (h: string) => h === "" ? [] : h.split(":");
  const all = halves.flatMap(groups);
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  if (halves.length === 2) return all.length < groupsNeeded;
  groupsNeeded = 8;
  return all.length === groupsNeeded;
}

// Counts per ASCII character for entropy(); every call leaves it zeroed.
const ENTROPY_COUNTS = new Int32Array(128);

/** Shannon entropy in bits per character. */
export function entropy(s: string): number {
  // ASCII (what the secret recognizer passes): count in an array, summing in order of first
  // occurrence as the Map below does, so the result is the same to the last bit.
  const order: number[] = [];
  let ascii = true;
  for (let i = 0; i < s.length && ascii; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128) ascii = false;
    else if (ENTROPY_COUNTS[c]++ === 0) order.push(c);
  }
  let h = 0;
  for (const c of order) {
    const p = ENTROPY_COUNTS[c] / s.length;
    h -= p * Math.log2(p);
    ENTROPY_COUNTS[c] = 0;
  }
  if (ascii) return h;
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/** A calendar date that exists (month 1-12, day within the month, leap years). */
export function validDate(year: number, month: number, day: number): boolean {
  if (month < 1 || month > 12 || day < 1) return false;
  const days = [
    31,
    (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28,
    31,
    30,
    31,
    30,
    31,
    31,
    30,
    31,
    30,
    31,
  ];
  return day <= days[month - 1];
}
