// Shipped network presets (policies/presets/NAME.yaml: small policies with only
// network_policies) and tiers (policies/tiers.yaml), and merging them into a base policy.
// The files are compiled into the binary with `deno compile --include policies` and read
// through import.meta.url, exactly like policies/default.yaml.

import { isMap, parseDocument, type YAMLMap } from "yaml";
import { z } from "zod";
import { parsePolicy, parseYamlWithSchema, PolicyError } from "./load.ts";
import { networkPolicies } from "./network.ts";
import type { Policy } from "./schema.ts";

export const PRESET_NAMES = [
  "npm",
  "pypi",
  "github",
  "huggingface",
  "nvidia",
  "openai",
  "anthropic",
  "slack",
  "telegram",
  "discord",
  "jira",
] as const;

export const TIER_NAMES = ["restricted", "balanced", "open"] as const;

function policiesUrl(rel: string): URL {
  return new URL(`../../policies/${rel}`, import.meta.url);
}

/** Path of a shipped policy file (default.yaml, healthcare.yaml, presets/npm.yaml, ...). */
export function shippedPolicyPath(rel: string): string {
  return policiesUrl(rel).pathname;
}

export function isPreset(name: string): name is typeof PRESET_NAMES[number] {
  return (PRESET_NAMES as readonly string[]).includes(name);
}

/** A preset given as a file rather than a shipped name: a path, or a name ending in .yaml/.yml. */
export function isPresetFile(name: string): boolean {
  return name.includes("/") || /\.ya?ml$/.test(name);
}

/**
 * A preset file: ours (`version: 1` and `network_policies`) or NemoClaw's (a `preset:` block with
 * its name and description, `network_policies`, no version). Nothing else may be in it: a
 * preset only adds network entries.
 */
const presetFileSchema = z.strictObject({
  preset: z.strictObject({ name: z.string().min(1), description: z.string().optional() })
    .optional(),
  version: z.literal(1, { message: "version must be 1" }).optional(),
  network_policies: networkPolicies,
});

/** Validates a preset file's text (file:line:column errors); returns its entries' names. */
export function parsePresetFile(text: string, file: string): string[] {
  return Object.keys(parseYamlWithSchema(text, file, presetFileSchema, "preset").network_policies);
}

async function presetSource(name: string): Promise<{ text: string; file: string }> {
  if (!isPresetFile(name)) return { text: await presetText(name), file: `presets/${name}.yaml` };
  try {
    return { text: await Deno.readTextFile(name), file: name };
  } catch (e) {
    throw new PolicyError([{
      file: name,
      line: 0,
      column: 0,
      message: `cannot read preset: ${(e as Error).message}`,
    }]);
  }
}

export async function presetText(name: string): Promise<string> {
  if (!isPreset(name)) {
    throw new PolicyError([{
      file: name,
      line: 0,
      column: 0,
      message: `unknown preset ${JSON.stringify(name)} (presets: ${PRESET_NAMES.join(", ")})`,
    }]);
  }
  return await Deno.readTextFile(policiesUrl(`presets/${name}.yaml`));
}

export async function loadPreset(name: string): Promise<Policy> {
  return parsePolicy(await presetText(name), `presets/${name}.yaml`);
}

/** The first comment paragraph of a preset, without the "Preset NAME:" prefix. */
export function presetDescription(text: string): string {
  const lines: string[] = [];
  for (const l of text.split("\n")) {
    if (!l.startsWith("#")) break;
    lines.push(l.replace(/^#\s*/, ""));
  }
  return lines.join(" ").replace(/^Preset [^:]+:\s*/, "");
}

const presetList = z.array(z.enum(PRESET_NAMES));
const tiersSchema = z.strictObject({
  restricted: presetList,
  balanced: presetList,
  open: presetList,
});

export type Tiers = z.infer<typeof tiersSchema>;

export async function loadTiers(): Promise<Tiers> {
  const text = await Deno.readTextFile(policiesUrl("tiers.yaml"));
  return tiersSchema.parse(parseDocument(text).toJS());
}

/**
 * Adds the network_policies entries of each preset (a shipped name, or a preset file of ours or
 * NemoClaw's) to the base policy's YAML, keeping
 * the base's comments. Throws PolicyError on an unknown preset or when two define the same
 * entry. Returns the merged YAML text, validated.
 */
export async function mergePresets(
  baseText: string,
  baseFile: string,
  names: string[],
): Promise<string> {
  parsePolicy(baseText, baseFile);
  const doc = parseDocument(baseText);
  let target = doc.get("network_policies") as YAMLMap | undefined | null;
  if (!isMap(target)) {
    target = doc.createNode({}) as YAMLMap;
    doc.set("network_policies", target);
  }
  const origin = new Map<string, string>();
  for (const key of target.items.map((p) => String((p.key as { value?: unknown })?.value))) {
    origin.set(key, baseFile);
  }
  for (const name of names) {
    const { text, file } = await presetSource(name);
    parsePresetFile(text, file);
    const presetDoc = parseDocument(text);
    const entries = presetDoc.get("network_policies") as YAMLMap;
    for (const pair of entries.items) {
      const key = String((pair.key as { value?: unknown }).value);
      const before = origin.get(key);
      if (before !== undefined) {
        throw new PolicyError([{
          file,
          line: 0,
          column: 0,
          message: `network_policies entry ${JSON.stringify(key)} is also defined by ${before}`,
        }]);
      }
      origin.set(key, file);
      target.add(pair);
    }
  }
  const merged = doc.toString({ lineWidth: 0 });
  parsePolicy(merged, `${baseFile} + ${names.join(" + ")}`);
  return merged;
}
