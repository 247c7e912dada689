// PII detection accuracy and throughput: clawcage's detector against the npm libraries
// redact-pii, openredaction and @redactpii/node, on the same generated evaluation set, in one run.
//
//   deno run -A scripts/bench/pii_accuracy.ts [--count N] [--seed S] [--json FILE] [--breakdown]
//
// Prints markdown tables (per entity type precision/recall/F1, group totals, throughput) for
// the tuning variant and the held-out variant of the set, plus the machine it ran on.
// --breakdown adds where clawcage's detector spends its time: each recognizer alone over the
// same documents (CPU time, best of three).

import { cpus } from "node:os";
import process from "node:process";
import { OpenRedaction } from "openredaction";
import { SyncRedactor } from "redact-pii";
import { Redactor } from "@redactpii/node";
import { detect, RECOGNIZERS } from "../../router/pii/detect.ts";
import { ENTITY_TYPES } from "../../router/pii/types.ts";
import { type Doc, generate, type Variant } from "./pii_dataset.ts";
import { type Counts, MATCH_RULE, prf, scoreDoc, type Span, total } from "./pii_score.ts";

interface Engine {
  name: string;
  /** Our entity types this engine can emit at all (the rest are "n/a" in the table). */
  supports: ReadonlySet<string>;
  run(text: string): Span[] | Promise<Span[]>;
}

/**
 * Recover spans from a redactor that only returns text: the output is the input with some
 * spans replaced by placeholder words, so align the literal pieces back onto the input.
 */
export function alignRedacted(
  original: string,
  redacted: string,
  placeholder: RegExp,
  mapType: (placeholder: string) => string,
): Span[] {
  const parts = redacted.split(placeholder); // [lit, ph, lit, ph, ..., lit]
  if (!original.startsWith(parts[0])) return [];
  const out: Span[] = [];
  const go = (k: number, pos: number): boolean => {
    if (k >= parts.length) return pos === original.length;
    const ph = parts[k], lit = parts[k + 1];
    for (let e = pos + 1; e <= original.length; e++) {
      if (!original.startsWith(lit, e)) continue;
      out.push({ type: mapType(ph), start: pos, end: e });
      if (go(k + 2, e + lit.length)) return true;
      out.pop();
    }
    return false;
  };
  return go(1, parts[0].length) ? out : [];
}

function openRedactionType(t: string): string {
  if (t === "NAME" || t === "EMERGENCY_CONTACT") return "PERSON";
  if (t === "DATE" || t === "DATE_OF_BIRTH") return "DATE_TIME";
  if (t.startsWith("PHONE")) return "PHONE_NUMBER";
  if (t === "IPV4" || t === "IPV6") return "IP_ADDRESS";
  if (t === "EMAIL") return "EMAIL_ADDRESS";
  if (t === "SSN") return "US_SSN";
  if (t === "ITIN") return "US_ITIN";
  if (t === "DRIVING_LICENSE_US") return "US_DRIVER_LICENSE";
  if (t === "PASSPORT_US" || t === "US_PASSPORT" || t === "PASSPORT") return "US_PASSPORT";
  if (t === "IBAN") return "IBAN_CODE";
  if (t === "CREDIT_CARD") return "CREDIT_CARD";
  if (t === "MEDICAL_RECORD_NUMBER") return "MEDICAL_RECORD_NUMBER";
  if (t === "HEALTH_PLAN_NUMBER") return "HEALTH_PLAN_ID";
  if (t === "DEA_NUMBER") return "US_DEA";
  if (t === "NPI" || t === "NPI_NUMBER") return "US_NPI";
  if (t === "URL") return "URL";
  if (t === "ADDRESS_STREET" || t === "ZIP_CODE_US") return "LOCATION";
  if (t === "BANK_ACCOUNT" || t === "US_BANK_ACCOUNT" || t === "BANK_ACCOUNT_US") {
    return "US_BANK_NUMBER";
  }
  if (t === "MEDICAL_LICENSE" || t === "MEDICAL_LICENSE_NUMBER") return "MEDICAL_LICENSE";
  if (/KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL/.test(t)) return "SECRET";
  return `other:${t}`;
}

function engines(): Engine[] {
  const openredaction = new OpenRedaction({ redactionMode: "placeholder" });
  const redactPii = new SyncRedactor();
  const redactpiiNode = new Redactor();
  const rpMap: Record<string, string> = {
    PERSON_NAME: "PERSON",
    CREDIT_CARD_NUMBER: "CREDIT_CARD",
    STREET_ADDRESS: "LOCATION",
    ZIPCODE: "LOCATION",
    PHONE_NUMBER: "PHONE_NUMBER",
    IP_ADDRESS: "IP_ADDRESS",
    US_SOCIAL_SECURITY_NUMBER: "US_SSN",
    EMAIL_ADDRESS: "EMAIL_ADDRESS",
    URL: "URL",
    PASSWORD: "SECRET",
    CREDENTIALS: "SECRET",
  };
  const rpToken = new RegExp(`\\b(${[...Object.keys(rpMap), "USERNAME", "DIGITS"].join("|")})\\b`);
  const nodeMap: Record<string, string> = {
    PERSON_NAME: "PERSON",
    CREDIT_CARD_NUMBER: "CREDIT_CARD",
    PHONE_NUMBER: "PHONE_NUMBER",
    US_SOCIAL_SECURITY_NUMBER: "US_SSN",
    EMAIL_ADDRESS: "EMAIL_ADDRESS",
  };
  const nodeToken = new RegExp(`\\b(${[...Object.keys(nodeMap), "DIGITS"].join("|")})\\b`);
  return [
    {
      name: "clawcage",
      supports: new Set(ENTITY_TYPES),
      run: (text) => detect(text),
    },
    {
      name: "openredaction 1.1.5",
      supports: new Set([
        "PERSON",
        "DATE_TIME",
        "PHONE_NUMBER",
        "IP_ADDRESS",
        "EMAIL_ADDRESS",
        "US_SSN",
        "US_ITIN",
        "US_DRIVER_LICENSE",
        "IBAN_CODE",
        "CREDIT_CARD",
        "MEDICAL_RECORD_NUMBER",
        "HEALTH_PLAN_ID",
        "US_DEA",
        "URL",
        "LOCATION",
        "SECRET",
      ]),
      run: async (text) =>
        (await openredaction.detect(text)).detections.map((d) => ({
          type: openRedactionType(d.type),
          start: d.position[0],
          end: d.position[1],
        })),
    },
    {
      name: "redact-pii 3.4.0",
      supports: new Set(Object.values(rpMap)),
      run: (text) =>
        alignRedacted(text, redactPii.redact(text), rpToken, (p) => rpMap[p] ?? `other:${p}`),
    },
    {
      name: "@redactpii/node 1.0.17",
      supports: new Set(Object.values(nodeMap)),
      run: (text) =>
        alignRedacted(
          text,
          redactpiiNode.redact(text),
          nodeToken,
          (p) => nodeMap[p] ?? `other:${p}`,
        ),
    },
  ];
}

const CHECKSUM_TYPES = new Set(["CREDIT_CARD", "IBAN_CODE", "US_NPI", "US_DEA"]);

interface Result {
  engine: string;
  supports: ReadonlySet<string>;
  counts: Map<string, Counts>;
  /** Wall clock. */
  mbPerS: number;
  /** Per second of this process's CPU time: on a shared machine, waiting for a core does not count. */
  mbPerCpuS: number;
}

/** CPU seconds (user + system) this process has used. */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

// Timed passes per engine: at least MIN_PASSES, then more while under MORE_PASSES_S seconds
// in all (up to MAX_PASSES), so fast engines get enough samples for the best one to be
// steady on a shared machine; slow ones still run three.
const MIN_PASSES = 3, MAX_PASSES = 15, MORE_PASSES_S = 2;

async function evaluate(engine: Engine, docs: Doc[], bytes: number): Promise<Result> {
  // One full pass to warm up (JIT tiers, lazy tables), then the best of the timed passes:
  // the router is a long-running process, so steady state is what it sees.
  let preds: Span[][] = [];
  for (const d of docs) preds.push(await engine.run(d.text));
  let seconds = Infinity, cpu = Infinity;
  const started = performance.now();
  for (
    let pass = 0;
    pass < MIN_PASSES ||
    (pass < MAX_PASSES && performance.now() - started < MORE_PASSES_S * 1000);
    pass++
  ) {
    preds = [];
    const t0 = performance.now(), c0 = cpuSeconds();
    for (const d of docs) preds.push(await engine.run(d.text));
    seconds = Math.min(seconds, (performance.now() - t0) / 1000);
    cpu = Math.min(cpu, cpuSeconds() - c0);
  }
  const counts = new Map<string, Counts>();
  docs.forEach((d, i) => scoreDoc(d.entities, preds[i], counts));
  return {
    engine: engine.name,
    supports: engine.supports,
    counts,
    mbPerS: bytes / 1e6 / seconds,
    mbPerCpuS: bytes / 1e6 / cpu,
  };
}

/** Each recognizer alone over the documents: CPU ms (best of three after one warm-up pass). */
function breakdown(docs: Doc[]): string {
  const rows = RECOGNIZERS.map((r) => {
    for (const d of docs) r.find(d.text);
    let best = Infinity;
    for (let pass = 0; pass < 3; pass++) {
      const c0 = cpuSeconds();
      for (const d of docs) r.find(d.text);
      best = Math.min(best, cpuSeconds() - c0);
    }
    return { name: r.types.join(", "), ms: best * 1000 };
  }).sort((a, b) => b.ms - a.ms);
  const sum = rows.reduce((s, r) => s + r.ms, 0);
  return [
    "| recognizer | CPU ms | share |",
    "|---|---:|---:|",
    ...rows.map((r) => `| ${r.name} | ${r.ms.toFixed(1)} | ${(100 * r.ms / sum).toFixed(1)} % |`),
    "",
  ].join("\n");
}

const f = (x: number) => x.toFixed(3);

function table(variant: Variant, docs: Doc[], results: Result[]): string {
  const lines: string[] = [];
  const gold = new Map<string, number>();
  for (const d of docs) for (const e of d.entities) gold.set(e.type, (gold.get(e.type) ?? 0) + 1);
  lines.push(
    `### Variant \`${variant}\`: ${docs.length} documents, ${
      [...gold.values()].reduce((a, b) => a + b, 0)
    } gold entities`,
    "",
    `| type | gold | ${results.map((r) => `${r.engine} P / R / F1`).join(" | ")} |`,
    `|---|---:|${results.map(() => "---").join("|")}|`,
  );
  for (const t of ENTITY_TYPES) {
    const cells = results.map((r) => {
      if (!r.supports.has(t)) return "n/a (no such detector)";
      const s = prf(r.counts.get(t) ?? { tp: 0, fp: 0, fn: 0 });
      return `${f(s.p)} / ${f(s.r)} / **${f(s.f1)}**`;
    });
    lines.push(`| ${t} | ${gold.get(t) ?? 0} | ${cells.join(" | ")} |`);
  }
  const row = (label: string, pick: (r: Result) => Counts) =>
    `| ${label} | | ${
      results.map((r) => {
        const s = prf(pick(r));
        return `${f(s.p)} / ${f(s.r)} / **${f(s.f1)}**`;
      }).join(" | ")
    } |`;
  lines.push(
    row("checksum-validated (card, IBAN, NPI, DEA), micro", (r) => total(r.counts, CHECKSUM_TYPES)),
  );
  lines.push(row("all types, micro (other-type predictions count as FP)", (r) => total(r.counts)));
  lines.push(
    row(
      "only the types each tool claims, micro",
      (r) =>
        total(
          r.counts,
          new Set([...r.supports, ...[...r.counts.keys()].filter((k) => k.startsWith("other:"))]),
        ),
    ),
  );
  const ours = results[0].mbPerCpuS;
  lines.push(
    "",
    `| throughput | ${results.map((r) => r.engine).join(" | ")} |`,
    `|---|${results.map(() => "---:").join("|")}|`,
    `| MB/s (UTF-8 input, one thread) | ${results.map((r) => r.mbPerS.toFixed(2)).join(" | ")} |`,
    `| MB per CPU second | ${results.map((r) => r.mbPerCpuS.toFixed(2)).join(" | ")} |`,
    `| ours ÷ theirs (CPU) | ${
      results.map((r) => (ours / r.mbPerCpuS).toFixed(2) + "×").join(" | ")
    } |`,
    "",
  );
  return lines.join("\n");
}

if (import.meta.main) {
  const args = Deno.args;
  const opt = (n: string) => {
    const i = args.indexOf(n);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const count = Number(opt("--count") ?? 2400);
  const seed = Number(opt("--seed") ?? 5);
  const cpu = cpus();
  const out: string[] = [
    "## PII detection accuracy",
    "",
    `Machine: ${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} cores; Deno ${Deno.version.deno}. ` +
    `Seed ${seed}. Match rule: ${MATCH_RULE}.`,
    "",
  ];
  const all: Record<string, unknown> = {};
  for (const variant of ["tune", "heldout"] as Variant[]) {
    const docs = generate({ seed, count, variant });
    const bytes = docs.reduce((s, d) => s + new TextEncoder().encode(d.text).length, 0);
    const results: Result[] = [];
    for (const e of engines()) {
      console.error(`[pii_accuracy] ${variant}: ${e.name} on ${docs.length} documents ...`);
      results.push(await evaluate(e, docs, bytes));
    }
    out.push(table(variant, docs, results));
    if (args.includes("--breakdown")) {
      out.push(`Where clawcage's time goes (\`${variant}\`, each recognizer alone):`, "");
      out.push(breakdown(docs));
    }
    all[variant] = results.map((r) => ({
      engine: r.engine,
      mbPerS: r.mbPerS,
      mbPerCpuS: r.mbPerCpuS,
      counts: Object.fromEntries(r.counts),
    }));
  }
  console.log(out.join("\n"));
  const json = opt("--json");
  if (json) await Deno.writeTextFile(json, JSON.stringify(all, null, 2));
}
