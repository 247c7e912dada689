// Word knowledge for names and places, taken from compromise's English lexicon (shipped in its
// npm package): first names, last names, cities, regions, countries, and which capitalised
// words are ordinary vocabulary. Looking words up is far faster than running compromise's
// tagger over every text (measured in scripts/bench/pii_nlp.ts).

import nlp from "compromise";

type Tag = string;
const LEXICON = (nlp as unknown as { model(): { one: { lexicon: Record<string, Tag | Tag[]> } } })
  .model().one.lexicon;

function tags(word: string): readonly Tag[] {
  const t = LEXICON[word.toLowerCase()];
  return t === undefined ? [] : Array.isArray(t) ? t : t.split(",");
}

const FIRST = new Set(["FemaleName", "MaleName", "FirstName", "Person"]);
const PLACE = new Set(["City", "Region", "Country", "Place"]);
const NAMEISH = new Set([...FIRST, "LastName", "ProperNoun", ...PLACE]);

export function isFirstName(word: string): boolean {
  return tags(word).some((t) => FIRST.has(t));
}

export function isLastName(word: string): boolean {
  return tags(word).includes("LastName");
}

export function isPlace(word: string): boolean {
  return tags(word).some((t) => PLACE.has(t));
}

export function isCity(word: string): boolean {
  return tags(word).includes("City");
}

/** A word the lexicon knows only as ordinary vocabulary (verb, adjective, month, ...). */
export function isCommonWord(word: string): boolean {
  const t = tags(word);
  return t.length > 0 && !t.some((x) => NAMEISH.has(x));
}
