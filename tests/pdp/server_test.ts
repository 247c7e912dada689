// The PDP's request handling and reload rules, in-process (pure parts of core/pdp/server.ts).

import assert from "node:assert/strict";
import fc from "fast-check";
import { policyWire } from "../../core/pdp/client.ts";
import { loadPolicyJson } from "../../core/pdp/main.ts";
import { MAX_REASON } from "../../core/pdp/protocol.ts";
import { answerLine, reloadRefusal } from "../../core/pdp/server.ts";
import { CURL, policyYaml } from "./helpers.ts";

/** Policy YAML as the PDP loads it (parsed and validated by the client first). */
const loadPolicyText = (text: string, file: string) => loadPolicyJson(policyWire(text, file));

const policy = loadPolicyText(policyYaml(["example.org", "*.cdn.example.com"]), "p.yaml");

Deno.test("any line gets exactly one JSON reply: a decision or an error, never a throw", () => {
  const lines = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.json({ maxDepth: 3 }),
    fc.record({
      id: fc.oneof(fc.integer(), fc.string({ maxLength: 140 }), fc.constant(null)),
      binary: fc.oneof(fc.constant(CURL), fc.string(), fc.integer()),
      ancestors: fc.oneof(fc.array(fc.constantFrom(CURL, "/bin/sh", "")), fc.string()),
      host: fc.oneof(fc.constant("example.org"), fc.domain(), fc.string()),
      port: fc.oneof(fc.constant(443), fc.integer({ min: -5, max: 70000 }), fc.string()),
      method: fc.option(fc.constantFrom("GET", "POST", "", "get"), { nil: undefined }),
      path: fc.option(fc.string({ maxLength: 50 }), { nil: undefined }),
    }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  );
  fc.assert(
    fc.property(lines, (line) => {
      const reply = answerLine(policy, line);
      assert.ok(!reply.includes("\n"), "one line");
      const v = JSON.parse(reply);
      assert.ok("id" in v);
      if ("error" in v) assert.equal(typeof v.error, "string");
      else assert.ok(["allow", "deny", "audit-allow"].includes(v.verdict), reply);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("a valid request is decided by the compiled policy", () => {
  const allow = JSON.parse(
    answerLine(
      policy,
      JSON.stringify({ id: 1, binary: CURL, host: "a.cdn.example.com", port: 443 }),
    ),
  );
  assert.equal(allow.verdict, "allow");
  assert.equal(allow.id, 1);
  const deny = JSON.parse(
    answerLine(
      policy,
      JSON.stringify({ id: "x", binary: CURL, host: "cdn.example.com", port: 443 }),
    ),
  );
  assert.equal(deny.verdict, "deny");
  assert.equal(deny.id, "x");
});

Deno.test("reload: network_policies and privacy may change; any other section may not", () => {
  const base = loadPolicyText(policyYaml(["example.org"]), "p.yaml");
  assert.equal(reloadRefusal(base, loadPolicyText(policyYaml(["example.net"]), "p.yaml")), null);
  assert.equal(reloadRefusal(base, loadPolicyText("version: 1\n", "p.yaml")), null);
  const cases: [string, RegExp][] = [
    ["filesystem_policy:\n  read_only: [/usr]\n", /^reload refused: filesystem_policy is fixed/],
    ["landlock:\n  compatibility: hard_requirement\n", /landlock is fixed/],
    ["process:\n  run_as_user: nobody\n", /process is fixed/],
    [
      "process:\n  run_as_user: nobody\nlandlock:\n  compatibility: hard_requirement\n",
      /landlock, process are fixed/,
    ],
  ];
  for (const [extra, re] of cases) {
    const refusal = reloadRefusal(
      base,
      loadPolicyText(policyYaml(["example.org"], extra), "p.yaml"),
    );
    assert.match(refusal ?? "", re, extra);
  }
  // Writing a default explicitly is no change.
  const explicit = loadPolicyText(
    policyYaml(["example.org"], "landlock:\n  compatibility: best_effort\n"),
    "p.yaml",
  );
  assert.equal(reloadRefusal(base, explicit), null);
});

Deno.test("a reason that echoes a long request is cut to MAX_REASON characters", () => {
  const ancestors = Array.from({ length: 60 }, (_, i) => `/opt/${"d".repeat(200)}/${i}`);
  const line = JSON.stringify({
    id: 1,
    binary: "/bin/x",
    ancestors,
    host: "example.org",
    port: 443,
  });
  assert.ok(line.length < 16 * 1024);
  const reply = JSON.parse(answerLine(policy, line));
  assert.equal(reply.verdict, "deny");
  assert.ok(reply.reason.length <= MAX_REASON, `${reply.reason.length}`);
  assert.ok(reply.reason.endsWith("…"));
});
