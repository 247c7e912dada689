// Healthcare identifiers: medical record numbers, NPI (Luhn with 80840), DEA (checksum),
// medical licences, health plan / Medicare beneficiary identifiers.

import type { Entity } from "../types.ts";
import { validDea, validNpi } from "../validators.ts";
import { before, firstDigit, labelled, lowerOf, type Recognizer, scan } from "./common.ts";

const MRN_LABEL =
  /\b(?:MRN|medical\s+record(?:\s+(?:number|no|#))?|chart\s*(?:#|no\b|number)|patient\s+id|MR#)/gi;
const MRN_ID = /[A-Z]{1,2}\d{5,10}|\d{3}-\d{2}-\d{3}|\d{5,10}/;

export const medicalRecord: Recognizer = {
  types: ["MEDICAL_RECORD_NUMBER"],
  find(text) {
    if (firstDigit(text) < 0) return []; // every record number form holds digits
    return labelled(text, MRN_LABEL, MRN_ID).map(([start, end]) => ({
      type: "MEDICAL_RECORD_NUMBER" as const,
      start,
      end,
      score: 0.9,
    }));
  },
};

const TEN = /(?<![\w-])[12]\d{9}(?![\w-])/g;

export const npi: Recognizer = {
  types: ["US_NPI"],
  find(text) {
    const out: Entity[] = [];
    const digit = firstDigit(text);
    if (digit < 0) return out;
    scan(text, TEN, (m) => {
      if (!validNpi(m[0])) return;
      const score = /\bnpi\b/.test(before(text, m.index, 30)) ? 1 : 0.6;
      out.push({ type: "US_NPI", start: m.index, end: m.index + 10, score });
    }, digit);
    return out;
  },
};

const DEA_RE = /\b[A-Z][A-Z9]\d{7}\b/g;

export const dea: Recognizer = {
  types: ["US_DEA"],
  find(text) {
    const out: Entity[] = [];
    // Two letters (the second may be a 9), then digits.
    const digit = firstDigit(text);
    if (digit < 0) return out;
    scan(text, DEA_RE, (m) => {
      if (!validDea(m[0])) return;
      const score = /\bdea\b/.test(before(text, m.index, 30)) ? 1 : 0.85;
      out.push({ type: "US_DEA", start: m.index, end: m.index + 9, score });
    }, Math.max(0, digit - 2));
    return out;
  },
};

const LICENSE_LABEL =
  /(?<!driver'?s'?\s+|driving\s+)\b(?:medical\s+licen[cs]e|state\s+licen[cs]e|licen[cs]e|lic\.)(?=[\s:#])/gi;
const LICENSE_ID = /(?:MD|DO|RN|NP|PA)?\d{4,8}|[A-Z]{1,2}\d{4,8}|\d{2}-\d{6}/;

export const medicalLicense: Recognizer = {
  types: ["MEDICAL_LICENSE"],
  find(text) {
    // Every label holds "lic" (licence, license, lic.): one substring search skips the regex.
    if (firstDigit(text) < 0 || !lowerOf(text).includes("lic")) return [];
    return labelled(text, LICENSE_LABEL, LICENSE_ID).map(([start, end]) => ({
      type: "MEDICAL_LICENSE" as const,
      start,
      end,
      score: 0.85,
    }));
  },
};

const PLAN_LABEL =
  /\b(?:member\s+id|health\s+plan\s+id|insurance\s+(?:member\s+)?id|subscriber\s+id|medicare\s+(?:id|number|mbi)|medicaid\s+(?:id|number)|policy\s+(?:number|no|#)|group\s+number|beneficiary\s+id|MBI)/gi;
const PLAN_ID = /(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{5,16}[A-Z0-9]/;
// Medicare Beneficiary Identifier: 11 characters in a fixed letter/digit layout (CMS).
const MBI =
  /\b[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d[AC-HJKMNP-RT-Y]{2}\d{2}\b/g;

export const healthPlan: Recognizer = {
  types: ["HEALTH_PLAN_ID"],
  find(text) {
    const digit = firstDigit(text);
    if (digit < 0) return []; // plan IDs and MBIs hold digits
    const out: Entity[] = labelled(text, PLAN_LABEL, PLAN_ID).map(([start, end]) => ({
      type: "HEALTH_PLAN_ID" as const,
      start,
      end,
      score: 0.85,
    }));
    scan(text, MBI, (m) => {
      out.push({ type: "HEALTH_PLAN_ID", start: m.index, end: m.index + 11, score: 0.7 });
    }, digit);
    return out;
  },
};
