import assert from "node:assert/strict";
import { compilePolicy, decide } from "../../core/policy/decide.ts";
import { formatProblem, loadPolicyFile, parsePolicy, PolicyError } from "../../core/policy/load.ts";
import { join } from "node:path";
import { cli } from "../helpers/cli.ts";
import {
  loadPreset,
  loadTiers,
  mergePresets,
  PRESET_NAMES,
  shippedPolicyPath,
} from "../../core/policy/presets.ts";

const POLICIES = new URL("../../policies/", import.meta.url).pathname;

/** Every .yaml file shipped under policies/, relative to it. */
function shippedFiles(dir = POLICIES, rel = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.isDirectory) out.push(...shippedFiles(`${dir}${e.name}/`, `${rel}${e.name}/`));
    else if (e.name.endsWith(".yaml")) out.push(`${rel}${e.name}`);
  }
  return out.sort();
}

Deno.test("presets: every shipped policy file is loaded by a test", async () => {
  const files = shippedFiles();
  const presets = files.filter((f) => f.startsWith("presets/")).map((f) => f.slice(8, -5));
  assert.deepEqual(presets.sort(), [...PRESET_NAMES].sort(), "PRESET_NAMES matches the files");
  for (const f of files) {
    if (f === "tiers.yaml") {
      await loadTiers();
      continue;
    }
    await loadPolicyFile(shippedPolicyPath(f));
  }
  assert.ok(files.includes("healthcare.yaml") && files.includes("default.yaml"));
});

Deno.test("presets: each preset has one entry named after it, with endpoints and binaries", async () => {
  for (const name of PRESET_NAMES) {
    const p = await loadPreset(name);
    assert.deepEqual(Object.keys(p.network_policies), [name]);
    const entry = p.network_policies[name];
    assert.ok(entry.endpoints.length > 0 && entry.binaries.length > 0, name);
    for (const ep of entry.endpoints) assert.equal(ep.enforcement, "enforce", name);
  }
});

Deno.test("presets: tiers name only presets and grow from restricted to open", async () => {
  const tiers = await loadTiers();
  assert.deepEqual(tiers.restricted, []);
  for (const p of tiers.balanced) assert.ok(tiers.open.includes(p));
  assert.deepEqual([...tiers.open].sort(), [...PRESET_NAMES].sort());
});

Deno.test("presets: merging into the default policy keeps its comments and adds the entries", async () => {
  const base = await Deno.readTextFile(shippedPolicyPath("default.yaml"));
  const merged = await mergePresets(base, "default.yaml", ["npm", "github"]);
  assert.ok(merged.includes("# clawcage default policy"));
  const p = parsePolicy(merged, "merged.yaml");
  assert.deepEqual(Object.keys(p.network_policies).sort(), ["github", "npm"]);
  assert.equal(p.process.run_as_user, "nobody");
  const c = compilePolicy(p);
  const node = { binary: "/usr/bin/node", port: 443 };
  assert.equal(decide(c, { ...node, host: "registry.npmjs.org" }).verdict, "allow");
  const publish = decide(c, { ...node, host: "registry.npmjs.org", method: "PUT", path: "/x" });
  assert.equal(publish.verdict, "deny");
  const git = "/usr/lib/git-core/git-remote-https";
  const fetch = { binary: git, host: "github.com", port: 443, method: "POST" };
  assert.equal(decide(c, { ...fetch, path: "/o/r/git-upload-pack" }).verdict, "allow");
  assert.equal(decide(c, { ...fetch, path: "/o/r/git-receive-pack" }).verdict, "deny");
  const refs = { ...fetch, method: "GET", path: "/o/r/info/refs" };
  assert.equal(decide(c, { ...refs, query: "service=git-upload-pack" }).verdict, "allow");
  assert.equal(decide(c, { ...refs, query: "service=git-receive-pack" }).verdict, "deny");
});

Deno.test("presets: unknown presets and duplicate entries are refused", async () => {
  const base = await Deno.readTextFile(shippedPolicyPath("default.yaml"));
  await assert.rejects(mergePresets(base, "default.yaml", ["nmp"]), /unknown preset "nmp"/);
  await assert.rejects(
    mergePresets(base, "default.yaml", ["npm", "npm"]),
    (e) =>
      e instanceof PolicyError &&
      /entry "npm" is also defined by presets\/npm\.yaml/.test(e.message),
  );
});

Deno.test("presets: the healthcare policy keeps PHI local and opens no messaging or model APIs", async () => {
  const p = await loadPolicyFile(shippedPolicyPath("healthcare.yaml"));
  assert.equal(p.privacy?.fail_closed, true);
  assert.equal(p.privacy?.cloud, undefined);
  assert.ok(p.privacy?.keep_local.includes("MEDICAL_RECORD_NUMBER"));
  assert.equal(p.landlock.compatibility, "hard_requirement");
  const c = compilePolicy(p);
  const hosts = [
    "slack.com",
    "hooks.slack.com",
    "api.telegram.org",
    "discord.com",
    "pastebin.com",
    "transfer.sh",
    "api.openai.com",
    "api.anthropic.com",
    "integrate.api.nvidia.com",
    "smtp.gmail.com",
  ];
  for (const host of hosts) {
    for (const binary of ["/usr/bin/python3", "/usr/bin/node", "/usr/bin/curl"]) {
      assert.equal(decide(c, { binary, host, port: 443 }).verdict, "deny", host);
    }
  }
  for (const ep of Object.values(p.network_policies).flatMap((e) => e.endpoints)) {
    assert.equal(ep.enforcement, "enforce");
    assert.equal(ep.access, "read-only");
  }
});

Deno.test("presets: a preset file in NemoClaw's format (preset: block, no version) merges; other keys are refused", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "clawcage-preset-" });
  try {
    const file = join(dir, "weather.yaml");
    Deno.writeTextFileSync(
      file,
      `preset:
  name: weather
  description: "Read-only weather API."

network_policies:
  weather:
    name: weather
    endpoints:
      - host: api.weather.example.com
        port: 443
        protocol: rest
        enforcement: enforce
        rules:
          - allow: { method: GET, path: "/v1/**" }
    binaries:
      - { path: /usr/bin/curl }
`,
    );
    const base = await Deno.readTextFile(shippedPolicyPath("default.yaml"));
    const merged = parsePolicy(await mergePresets(base, "default.yaml", [file, "npm"]), "m.yaml");
    assert.deepEqual(Object.keys(merged.network_policies).sort(), ["npm", "weather"]);
    assert.equal(merged.network_policies.weather.endpoints[0].host, "api.weather.example.com");

    // A preset only adds network entries: anything else is a positioned error.
    const bad = join(dir, "bad.yaml");
    Deno.writeTextFileSync(bad, "network_policies: {}\nfilesystem_policy:\n  read_write: [/]\n");
    await assert.rejects(
      mergePresets(base, "default.yaml", [bad]),
      (e: PolicyError) => {
        assert.match(
          formatProblem(e.problems[0]),
          /bad\.yaml:2:1: unknown key "filesystem_policy"/,
        );
        return true;
      },
    );
    // Through the CLI, with a missing file: one line, exit 1.
    const r = await cli(["policy", "presets", "--add", join(dir, "missing.yaml")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /missing\.yaml:0:0: cannot read preset/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
