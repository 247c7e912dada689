// Which NLP library for names and places: PERSON/LOCATION F1 and speed on the evaluation set for
//   compromise (full tagger: people() / places())
//   wink-nlp + wink-eng-lite-web-model (no person entity: runs of PROPN tokens -> PERSON)
//   ours: capitalised runs judged by compromise's lexicon plus context words (what detect() uses)
//
//   deno run -A scripts/bench/pii_nlp.ts [--count N]

import { cpus } from "node:os";
import nlp from "compromise";
import winkNLP from "wink-nlp";
import model from "wink-eng-lite-web-model";
import { person } from "../../router/pii/recognizers/person.ts";
import { location } from "../../router/pii/recognizers/location.ts";
import { generate } from "./pii_dataset.ts";
import { type Counts, prf, scoreDoc, type Span, total } from "./pii_score.ts";

const TITLE = /^(?:dr|mr|mrs|ms|prof)\.?\s+/i;
type View = { text: string; offset: { start: number; length: number } };

function compromiseSpans(text: string): Span[] {
  const doc = nlp(text);
  const spans: Span[] = [];
  const add = (type: string, list: View[]) => {
    for (const v of list) {
      const raw = text.slice(v.offset.start, v.offset.start + v.offset.length);
      const t = TITLE.exec(raw)?.[0].length ?? 0;
      const trimmed = raw.slice(t).replace(/[\s,.;:]+$/, "");
      spans.push({ type, start: v.offset.start + t, end: v.offset.start + t + trimmed.length });
    }
  };
  add("PERSON", doc.people().json({ offset: true }) as View[]);
  add("LOCATION", doc.places().json({ offset: true }) as View[]);
  return spans;
}

const wink = winkNLP(model);
const its = wink.its;
function winkSpans(text: string): Span[] {
  const doc = wink.readDoc(text);
  const pos = doc.tokens().out(its.pos) as string[];
  const tokens = doc.tokens().out() as string[];
  // Token offsets: walk the text, as wink gives token strings without positions.
  const spans: Span[] = [];
  let at = 0, runStart = -1, runEnd = -1;
  tokens.forEach((tok, i) => {
    const s = text.indexOf(tok, at);
    const start = s < 0 ? at : s;
    at = start + tok.length;
    if (pos[i] === "PROPN" && /^\p{Lu}/u.test(tok)) {
      if (runStart < 0) runStart = start;
      runEnd = at;
    } else if (runStart >= 0) {
      spans.push({ type: "PERSON", start: runStart, end: runEnd });
      runStart = -1;
    }
  });
  if (runStart >= 0) spans.push({ type: "PERSON", start: runStart, end: runEnd });
  return spans;
}

function oursSpans(text: string): Span[] {
  return [...person.find(text), ...location.find(text)].filter((e) => e.score >= 0.5);
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--count");
  const count = i >= 0 ? Number(Deno.args[i + 1]) : 600;
  const cpu = cpus();
  console.log(`Machine: ${cpu[0]?.model}, ${cpu.length} cores. ${count} documents per variant.\n`);
  console.log("| variant | engine | PERSON F1 | LOCATION F1 | both P / R / F1 | MB/s |");
  console.log("|---|---|---:|---:|---|---:|");
  for (const variant of ["tune", "heldout"] as const) {
    const docs = generate({ count, variant });
    const bytes = docs.reduce((s, d) => s + new TextEncoder().encode(d.text).length, 0);
    const keep = new Set(["PERSON", "LOCATION"]);
    for (
      const [name, run] of [
        ["compromise 14.17.0 (tagger)", compromiseSpans],
        ["wink-nlp 2.4.0 + lite model (PROPN)", winkSpans],
        ["ours (compromise lexicon + context)", oursSpans],
      ] as const
    ) {
      for (const d of docs.slice(0, 50)) run(d.text);
      const t0 = performance.now();
      const preds = docs.map((d) => run(d.text));
      const mbs = bytes / 1e6 / ((performance.now() - t0) / 1000);
      const acc = new Map<string, Counts>();
      docs.forEach((d, k) => scoreDoc(d.entities.filter((e) => keep.has(e.type)), preds[k], acc));
      const f = (t: string) => prf(acc.get(t) ?? { tp: 0, fp: 0, fn: 0 }).f1.toFixed(3);
      const all = prf(total(acc));
      console.log(
        `| ${variant} | ${name} | ${f("PERSON")} | ${f("LOCATION")} | ${all.p.toFixed(3)} / ${
          all.r.toFixed(3)
        } / **${all.f1.toFixed(3)}** | ${mbs.toFixed(2)} |`,
      );
    }
  }
}
