// PII/PHI detection: runs every recognizer, drops findings under the minimum score, and
// resolves overlaps (higher score wins, then the longer span, then the earlier one).

import type { DetectOptions, Entity, EntityType } from "./types.ts";
import { forgetText, type Recognizer } from "./recognizers/common.ts";
import { email, ipAddress, phone, url } from "./recognizers/contact.ts";
import { driverLicense, passport, ssnItin } from "./recognizers/government.ts";
import { bankAccount, creditCard, iban } from "./recognizers/financial.ts";
import { dea, healthPlan, medicalLicense, medicalRecord, npi } from "./recognizers/medical.ts";
import { secrets } from "./recognizers/secrets.ts";
import { dateTime } from "./recognizers/datetime.ts";
import { person } from "./recognizers/person.ts";
import { location } from "./recognizers/location.ts";

export type { DetectOptions, Entity, EntityType } from "./types.ts";

export const RECOGNIZERS: readonly Recognizer[] = [
  secrets,
  email,
  url,
  ipAddress,
  creditCard,
  iban,
  ssnItin,
  npi,
  dea,
  medicalRecord,
  medicalLicense,
  healthPlan,
  driverLicense,
  passport,
  bankAccount,
  phone,
  dateTime,
  location,
  person,
];

/** Higher score first, then the longer span, then the earlier one. */
function rank(a: Entity, b: Entity): number {
  return b.score - a.score || (b.end - b.start) - (a.end - a.start) || a.start - b.start;
}

/** Keep the best of overlapping findings; the result is sorted by start. */
export function resolveOverlaps(found: Entity[]): Entity[] {
  const ranked = found.slice();
  if (ranked.length > 24) ranked.sort(rank);
  else {
    // A text's handful of findings: a stable insertion sort, same order as the stable
    // Array.prototype.sort above, without its setup cost.
    for (let i = 1; i < ranked.length; i++) {
      const e = ranked[i];
      let j = i - 1;
      for (; j >= 0 && rank(ranked[j], e) > 0; j--) ranked[j + 1] = ranked[j];
      ranked[j + 1] = e;
    }
  }
  // `kept` stays sorted by start and non-overlapping, so one binary search per candidate.
  const kept: Entity[] = [];
  for (const e of ranked) {
    let lo = 0, hi = kept.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (kept[mid].start < e.start) lo = mid + 1;
      else hi = mid;
    }
    const prev = kept[lo - 1], next = kept[lo];
    if ((prev && prev.end > e.start) || (next && next.start < e.end)) continue;
    kept.splice(lo, 0, e);
  }
  return kept;
}

export function detect(text: string, options: DetectOptions = {}): Entity[] {
  const minScore = options.minScore ?? 0.5;
  const wanted: ReadonlySet<EntityType> | null = options.types ? new Set(options.types) : null;
  const found: Entity[] = [];
  try {
    for (const r of RECOGNIZERS) {
      if (wanted && !r.types.some((t) => wanted.has(t))) continue;
      const es = r.find(text);
      for (let i = 0; i < es.length; i++) {
        const e = es[i];
        if (e.score >= minScore && (!wanted || wanted.has(e.type))) found.push(e);
      }
    }
  } finally {
    forgetText();
  }
  return found.length > 1 ? resolveOverlaps(found) : found;
}
