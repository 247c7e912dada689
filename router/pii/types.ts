// The contract between PII detection (router/pii/) and its users (pseudonymisation, routing,
// `clawcage pii`). Entity names follow Microsoft Presidio's.

export const ENTITY_TYPES = [
  "PERSON",
  "EMAIL_ADDRESS",
  "PHONE_NUMBER",
  "US_SSN",
  "US_ITIN",
  "CREDIT_CARD",
  "IBAN_CODE",
  "IP_ADDRESS",
  "URL",
  "DATE_TIME",
  "LOCATION",
  "US_DRIVER_LICENSE",
  "US_PASSPORT",
  "US_BANK_NUMBER",
  "MEDICAL_RECORD_NUMBER",
  "US_NPI",
  "US_DEA",
  "MEDICAL_LICENSE",
  "HEALTH_PLAN_ID",
  "SECRET",
] as const;

export type EntityType = typeof ENTITY_TYPES[number];

/** One finding. `start`/`end` are JS string indices (UTF-16 code units), end exclusive. */
export interface Entity {
  type: EntityType;
  start: number;
  end: number;
  /** Confidence in [0, 1]. */
  score: number;
}

export interface DetectOptions {
  /** Drop findings scored below this (default 0.5). */
  minScore?: number;
  /** Only these types (default: all). */
  types?: readonly EntityType[];
}

/**
 * Implemented by router/pii/detect.ts as `export function detect(text, options?)`.
 * Findings never overlap: where two overlap, the higher score (then the longer span) wins.
 */
export type Detect = (text: string, options?: DetectOptions) => Entity[];
