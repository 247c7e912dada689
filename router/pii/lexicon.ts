// Word knowledge for names and places, taken from compromise's English lexicon (shipped in its
// npm package): first names, last names, cities, regions, countries, and which capitalised
// words are ordinary vocabulary. Looking words up is far faster than running compromise's
// tagger over every text (measured in scripts/bench/pii_nlp.ts). The lexicon's tags are folded
// into one bit set per word once, at load, so a lookup is one Map access.

import nlp from "compromise";

type Tag = string;
const LEXICON = (nlp as unknown as { model(): { one: { lexicon: Record<string, Tag | Tag[]> } } })
  .model().one.lexicon;

export const FIRST = 1, LAST = 2, PLACE = 4, CITY = 8;
const NAMEISH = 16, KNOWN = 32;
/** Known only as ordinary vocabulary (verb, adjective, month, ...): KNOWN and not NAMEISH. */
export const COMMON = 64;

const FIRST_TAGS = new Set(["FemaleName", "MaleName", "FirstName", "Person"]);
const PLACE_TAGS = new Set(["City", "Region", "Country", "Place"]);
const NAMEISH_TAGS = new Set([...FIRST_TAGS, "LastName", "ProperNoun", ...PLACE_TAGS]);

const FLAGS = new Map<string, number>();
for (const [word, t] of Object.entries(LEXICON)) {
  let f = KNOWN;
  for (const tag of Array.isArray(t) ? t : t.split(",")) {
    if (FIRST_TAGS.has(tag)) f |= FIRST;
    if (tag === "LastName") f |= LAST;
    if (PLACE_TAGS.has(tag)) f |= PLACE;
    if (tag === "City") f |= CITY;
    if (NAMEISH_TAGS.has(tag)) f |= NAMEISH;
  }
  if ((f & NAMEISH) === 0) f |= COMMON;
  FLAGS.set(word, f);
}

// Words repeat (names, places, sentence starts), so remember answers per spelling: one lookup
// instead of lower-casing and hashing a new string. A memo is emptied when it reaches MEMO_MAX
// entries, which bounds its memory in a long-running router.
const MEMO_MAX = 20_000;

/** `fn(word)`, remembered per spelling of `word`. */
export function perSpelling<T>(fn: (word: string) => T): (word: string) => T {
  const memo = new Map<string, T>();
  return (word) => {
    let v = memo.get(word);
    if (v === undefined) {
      v = fn(word);
      if (memo.size >= MEMO_MAX) memo.clear();
      memo.set(word, v);
    }
    return v;
  };
}

/** The lexicon's FIRST/LAST/PLACE/CITY/COMMON bits for `word`, any capitalisation. */
export const wordFlags = perSpelling((word) => FLAGS.get(word.toLowerCase()) ?? 0);

export function isFirstName(word: string): boolean {
  return (wordFlags(word) & FIRST) !== 0;
}

export function isLastName(word: string): boolean {
  return (wordFlags(word) & LAST) !== 0;
}

export function isPlace(word: string): boolean {
  return (wordFlags(word) & PLACE) !== 0;
}

export function isCity(word: string): boolean {
  return (wordFlags(word) & CITY) !== 0;
}

/** A word the lexicon knows only as ordinary vocabulary (verb, adjective, month, ...). */
export function isCommonWord(word: string): boolean {
  return (wordFlags(word) & COMMON) !== 0;
}
