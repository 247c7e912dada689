// Span scoring shared by the PII benchmarks.
//
// Match rule: a predicted entity matches a gold entity when the types are equal and the
// character spans overlap with intersection-over-union >= 0.5; each gold entity matches at
// most one prediction. Unmatched predictions are false positives, unmatched gold entities
// false negatives.

export interface Span {
  type: string;
  start: number;
  end: number;
}
export interface Counts {
  tp: number;
  fp: number;
  fn: number;
}
export const MATCH_RULE =
  "same type and character-span IoU >= 0.5 (each gold span matched at most once)";

export function iou(a: Span, b: Span): number {
  const inter = Math.min(a.end, b.end) - Math.max(a.start, b.start);
  if (inter <= 0) return 0;
  return inter / (Math.max(a.end, b.end) - Math.min(a.start, b.start));
}

/** Add one document's counts per type into `acc`. */
export function scoreDoc(
  gold: readonly Span[],
  pred: readonly Span[],
  acc: Map<string, Counts>,
  exact = false,
): void {
  const get = (t: string) => {
    let c = acc.get(t);
    if (!c) acc.set(t, c = { tp: 0, fp: 0, fn: 0 });
    return c;
  };
  const used = new Set<number>();
  for (const p of pred) {
    let best = -1, bestIou = 0;
    gold.forEach((g, i) => {
      if (used.has(i) || g.type !== p.type) return;
      const v = exact ? (g.start === p.start && g.end === p.end ? 1 : 0) : iou(g, p);
      if (v > bestIou) [best, bestIou] = [i, v];
    });
    if (best >= 0 && bestIou >= 0.5) {
      used.add(best);
      get(p.type).tp++;
    } else get(p.type).fp++;
  }
  gold.forEach((g, i) => {
    if (!used.has(i)) get(g.type).fn++;
  });
}

export function prf(c: Counts): { p: number; r: number; f1: number } {
  const p = c.tp + c.fp === 0 ? 0 : c.tp / (c.tp + c.fp);
  const r = c.tp + c.fn === 0 ? 0 : c.tp / (c.tp + c.fn);
  return { p, r, f1: p + r === 0 ? 0 : (2 * p * r) / (p + r) };
}

export function total(acc: Map<string, Counts>, types?: ReadonlySet<string>): Counts {
  const t = { tp: 0, fp: 0, fn: 0 };
  for (const [k, c] of acc) {
    if (types && !types.has(k)) continue;
    t.tp += c.tp;
    t.fp += c.fp;
    t.fn += c.fn;
  }
  return t;
}
