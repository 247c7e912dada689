// The policy's privacy section.

import assert from "node:assert/strict";
import { parsePolicy, PolicyError } from "../../core/policy/load.ts";

function problems(yaml: string): string {
  try {
    parsePolicy(yaml, "p.yaml");
  } catch (e) {
    if (e instanceof PolicyError) return e.message;
    throw e;
  }
  return "";
}

const GOOD = `version: 1
privacy:
  backends:
    nemotron:
      type: openai
      base_url: http://127.0.0.1:8000/v1
      model: nemotron-nano
    claude:
      type: anthropic
      base_url: https://api.anthropic.com
      api_key_env: ANTHROPIC_API_KEY
      model: claude-sonnet-4-5
  local: nemotron
  cloud: claude
  keep_local: [US_SSN, MEDICAL_RECORD_NUMBER]
  pseudonymise: [PERSON, EMAIL_ADDRESS]
`;

Deno.test("a privacy section loads with its defaults", () => {
  const p = parsePolicy(GOOD, "p.yaml").privacy!;
  assert.equal(p.fail_closed, true);
  assert.equal(p.min_score, 0.5);
  assert.equal(p.max_body_bytes, 8 * 1024 * 1024);
  assert.equal(p.backends.claude.timeout_ms, 120_000);
  assert.equal(parsePolicy("version: 1\n", "p.yaml").privacy, undefined);
});

Deno.test("privacy mistakes are reported with file:line:column", () => {
  assert.match(
    problems(GOOD.replace("type: openai", "type: llama-cpp\n      model_path: /m.gguf")),
    /^p\.yaml:7:17: privacy\.backends\.nemotron\.base_url: base_url is not used by type llama-cpp/,
  );
  assert.match(
    problems(
      GOOD.replace("      base_url: http://127.0.0.1:8000/v1\n", "").replace(
        "type: openai",
        "type: llama-cpp",
      ),
    ),
    /privacy\.backends\.nemotron: a llama-cpp backend needs model_path/,
  );
  assert.match(
    problems(GOOD.replace("model: nemotron-nano", "model: nemotron-nano\n      gpu_layers: 12")),
    /privacy\.backends\.nemotron\.gpu_layers: gpu_layers is only for type llama-cpp/,
  );
  assert.match(
    problems(GOOD.replace("US_SSN", "SSN")),
    /p\.yaml:15:\d+: privacy\.keep_local\.0: expected one of .*"US_SSN"/,
  );
  assert.match(
    problems(GOOD.replace("local: nemotron", "local: nemo")),
    /privacy\.local: local names backend "nemo", which is not in backends/,
  );
  assert.match(
    problems(GOOD.replace("cloud: claude", "clod: claude")),
    /unknown key "clod".*did you mean "cloud"/,
  );
  assert.match(
    problems(GOOD.replace("https://api.anthropic.com", "https://u:p@api.anthropic.com")),
    /must not carry credentials/,
  );
  assert.match(
    problems(GOOD.replace("api_key_env: ANTHROPIC_API_KEY", "api_key_env: sk-ant-123")),
    /name of an environment variable/,
  );
  assert.match(
    problems(GOOD.replace("  local: nemotron\n", "")),
    /keep_local needs a local backend/,
  );
});
