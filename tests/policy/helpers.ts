// Shared helpers for the policy tests: load fixtures and collect error lines.

import assert from "node:assert/strict";
import { formatProblem, parsePolicy, PolicyError } from "../../core/policy/load.ts";
import type { Policy } from "../../core/policy/schema.ts";

export function fixturePath(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).pathname;
}

export function loadFixture(name: string): Policy {
  return parsePolicy(Deno.readTextFileSync(fixturePath(name)), name);
}

/** The formatted problems of a policy that must be refused. */
export function problems(yaml: string): string[] {
  try {
    parsePolicy(yaml, "p.yaml");
  } catch (e) {
    if (e instanceof PolicyError) return e.problems.map(formatProblem);
    throw e;
  }
  assert.fail("policy was accepted");
}

/** A policy with one network entry whose single endpoint is `endpointYaml` (indented 6). */
export function withEndpoint(
  endpointYaml: string,
  binaries = "      - path: /usr/bin/curl",
): string {
  return `version: 1
network_policies:
  e:
    endpoints:
      - ${endpointYaml.trim().split("\n").join("\n        ")}
    binaries:
${binaries}
`;
}
