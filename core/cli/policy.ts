// `clawcage policy check|explain|diff|presets`: validate policies, explain a decision, show
// what access changes between two policies, and list or merge the shipped presets.

import { compilePolicy } from "../policy/decide.ts";
import type { DecisionRequest } from "../policy/decision.ts";
import { diffPolicies, isEmptyDiff } from "../policy/diff.ts";
import { explain } from "../policy/explain.ts";
import {
  formatProblem,
  loadPolicyFile,
  locate,
  PolicyError,
  type PolicyProblem,
} from "../policy/load.ts";
import {
  isPresetFile,
  loadTiers,
  mergePresets,
  PRESET_NAMES,
  presetDescription,
  presetText,
  shippedPolicyPath,
  TIER_NAMES,
} from "../policy/presets.ts";
import type { Policy } from "../policy/schema.ts";
import { policyWarnings } from "../policy/warnings.ts";
import { fail, printJson } from "./common.ts";

const USAGE = `Usage:
  clawcage policy check FILE... [--json]
      validate policies; every mistake as FILE:LINE:COLUMN: message (exit 1 if any);
      warnings (the policy loads, but probably does not mean what it says) do not fail
  clawcage policy explain FILE --binary PATH [--parent PATH]... --host HOST --port PORT
                          [--method M --path P [--query Q]] [--json]
      the decision for one connection (or request, with --method and --path), the entry and
      rule that decided, or for a denial the nearest rule and why it did not match
      (exit 0 allowed, 1 denied)
  clawcage policy diff A B [--json]
      access added (+), removed (-) and changed (~) from A to B (exit 0 same, 1 different)
  clawcage policy presets [--json]
      list the presets and tiers
  clawcage policy presets [--add NAME|FILE]... [--tier TIER] [--base FILE] [--json]
      print the base policy (default: the default policy) with the presets' network entries;
      FILE: a preset file of ours or NemoClaw's (a preset: block and network_policies)`;

interface Parsed {
  positional: string[];
  flags: Map<string, string[]>;
  json: boolean;
}

function parse(args: string[], valued: string[]): Parsed {
  const out: Parsed = { positional: [], flags: new Map(), json: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--json") out.json = true;
    else if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (!valued.includes(name)) fail(`policy: unknown option ${a} (see clawcage policy --help)`);
      const value = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (value === undefined) fail(`policy: ${a} needs a value`);
      out.flags.set(name, [...(out.flags.get(name) ?? []), value]);
    } else out.positional.push(a);
  }
  return out;
}

function one(p: Parsed, name: string, required: boolean): string | undefined {
  const v = p.flags.get(name);
  if (!v) {
    if (required) fail(`policy explain: --${name} is required`);
    return undefined;
  }
  if (v.length > 1) fail(`policy: --${name} given twice`);
  return v[0];
}

type Loaded = { ok: true; policy: Policy; text: string } | { ok: false; problems: PolicyProblem[] };

async function load(file: string): Promise<Loaded> {
  try {
    const policy = await loadPolicyFile(file);
    return { ok: true, policy, text: await Deno.readTextFile(file) };
  } catch (e) {
    if (e instanceof PolicyError) return { ok: false, problems: e.problems };
    throw e;
  }
}

function printProblems(problems: PolicyProblem[]): void {
  console.error(new PolicyError(problems).message);
}

async function check(args: string[]): Promise<number> {
  const p = parse(args, []);
  if (p.positional.length === 0) fail("policy check: give at least one FILE");
  const results = [];
  let failed = false;
  for (const file of p.positional) {
    const r = await load(file);
    if (r.ok) {
      const entries = Object.values(r.policy.network_policies);
      const endpoints = entries.reduce((n, e) => n + e.endpoints.length, 0);
      const warnings = policyWarnings(r.policy).map((w) => ({
        file,
        ...locate(r.text, w.path),
        message: `warning: ${w.path.join(".")}: ${w.message}`,
      }));
      results.push({ file, ok: true, entries: entries.length, endpoints, problems: [], warnings });
      if (!p.json) {
        for (const w of warnings) console.error(formatProblem(w));
        console.log(`${file}: ok (${entries.length} entries, ${endpoints} endpoints)`);
      }
    } else {
      failed = true;
      results.push({ file, ok: false, problems: r.problems });
      if (!p.json) printProblems(r.problems);
    }
  }
  if (p.json) printJson({ ok: !failed, files: results });
  return failed ? 1 : 0;
}

async function explainCommand(args: string[]): Promise<number> {
  const p = parse(args, ["binary", "parent", "host", "port", "method", "path", "query"]);
  if (p.positional.length !== 1) fail("policy explain: give exactly one policy FILE");
  const port = Number(one(p, "port", true));
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    fail("policy explain: --port must be 1-65535");
  }
  const method = one(p, "method", false);
  const path = one(p, "path", false);
  if ((method === undefined) !== (path === undefined)) {
    fail("policy explain: give --method and --path together (or neither, for a connection)");
  }
  const req: DecisionRequest = {
    binary: one(p, "binary", true)!,
    ...(p.flags.has("parent") ? { ancestors: p.flags.get("parent") } : {}),
    host: one(p, "host", true)!,
    port,
    ...(method !== undefined ? { method: method.toUpperCase(), path } : {}),
    ...(p.flags.has("query") ? { query: one(p, "query", false) } : {}),
  };
  const loaded = await load(p.positional[0]);
  if (!loaded.ok) {
    printProblems(loaded.problems);
    return 1;
  }
  const result = explain(compilePolicy(loaded.policy), req);
  const d = result.decision;
  if (p.json) {
    printJson({ request: req, ...result });
  } else {
    console.log(d.verdict);
    console.log(`  reason: ${d.reason}`);
    if (d.entry) console.log(`  entry:  ${d.entry}${d.rule ? `  rule: ${d.rule}` : ""}`);
    if (method === undefined && d.verdict !== "deny") {
      const extra = [d.inspect ? "inspect each request" : "no request inspection"];
      if (d.tlsSkip) extra.push("tls skip");
      if (d.allowedIps.length) extra.push(`allowed_ips ${d.allowedIps.join(", ")}`);
      console.log(`  proxy:  ${extra.join("; ")}`);
    }
    if (result.nearest) {
      const n = result.nearest;
      console.log(`  nearest: entry ${n.entry}, ${n.rule}`);
      for (const m of n.mismatches) console.log(`    - ${m}`);
    }
  }
  return d.verdict === "deny" ? 1 : 0;
}

async function diff(args: string[]): Promise<number> {
  const p = parse(args, []);
  if (p.positional.length !== 2) fail("policy diff: give two policy files, A and B");
  const [a, b] = await Promise.all(p.positional.map(load));
  if (!a.ok || !b.ok) {
    if (!a.ok) printProblems(a.problems);
    if (!b.ok) printProblems(b.problems);
    return 2;
  }
  const d = diffPolicies(a.policy, b.policy);
  if (p.json) printJson({ same: isEmptyDiff(d), ...d });
  else {
    for (const g of d.added) {
      console.log(`+ ${g.binary} -> ${g.host}:${g.port}  ${g.access}  [${g.entry}]`);
    }
    for (const g of d.removed) {
      console.log(`- ${g.binary} -> ${g.host}:${g.port}  ${g.access}  [${g.entry}]`);
    }
    for (const c of d.changed) {
      console.log(`~ ${c.binary} -> ${c.host}:${c.port}  ${c.before}  =>  ${c.after}`);
    }
    for (const s of d.sections) console.log(`~ ${s}`);
    if (isEmptyDiff(d)) console.log("no access changes");
  }
  return isEmptyDiff(d) ? 0 : 1;
}

async function presets(args: string[]): Promise<number> {
  const p = parse(args, ["add", "tier", "base"]);
  if (p.positional.length) fail(`policy presets: unexpected argument ${p.positional[0]}`);
  const tiers = await loadTiers();
  const names = [...(p.flags.get("add") ?? [])];
  const tier = one(p, "tier", false);
  if (tier !== undefined) {
    if (!(TIER_NAMES as readonly string[]).includes(tier)) {
      fail(`policy presets: unknown tier ${tier} (tiers: ${TIER_NAMES.join(", ")})`);
    }
    for (const n of tiers[tier as keyof typeof tiers]) if (!names.includes(n)) names.push(n);
  }
  for (const n of names) {
    if (!isPresetFile(n) && !(PRESET_NAMES as readonly string[]).includes(n)) {
      fail(
        `policy presets: unknown preset ${n} (presets: ${
          PRESET_NAMES.join(", ")
        }; or a preset file: a path ending in .yaml)`,
      );
    }
  }
  const base = one(p, "base", false);
  if (names.length === 0 && tier === undefined && base === undefined) {
    const list = await Promise.all(
      PRESET_NAMES.map(async (name) => ({
        name,
        description: presetDescription(await presetText(name)),
      })),
    );
    if (p.json) printJson({ presets: list, tiers });
    else {
      console.log("Presets (clawcage policy presets --add NAME):");
      for (const { name, description } of list) console.log(`  ${name.padEnd(12)} ${description}`);
      console.log("Tiers (clawcage policy presets --tier NAME):");
      for (const t of TIER_NAMES) {
        console.log(`  ${t.padEnd(12)} ${tiers[t].join(", ") || "no network"}`);
      }
    }
    return 0;
  }
  const baseFile = base ?? shippedPolicyPath("default.yaml");
  let baseText: string;
  try {
    baseText = await Deno.readTextFile(baseFile);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(`policy presets: ${baseFile}: no such file`);
    throw e;
  }
  try {
    const merged = await mergePresets(baseText, base ?? "default.yaml", names);
    if (p.json) printJson({ base: base ?? "default", presets: names, policy: merged });
    else console.log(merged.trimEnd());
    return 0;
  } catch (e) {
    if (e instanceof PolicyError) {
      printProblems(e.problems);
      return 1;
    }
    throw e;
  }
}

export async function policyCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
    console.log(USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  switch (sub) {
    case "check":
      return await check(rest);
    case "explain":
      return await explainCommand(rest);
    case "diff":
      return await diff(rest);
    case "presets":
      return await presets(rest);
    default:
      fail(`policy: unknown subcommand ${JSON.stringify(sub)} (check, explain, diff, presets)`);
  }
}
