// http://inference.local from inside a real sandbox: the agent's request goes through the bridge
// and the egress proxy to the privacy router in the supervisor, which pseudonymises it for the
// cloud backend (a loopback server here) and restores the answer. The cloud key stays outside.

import assert from "node:assert/strict";
import { cli } from "../helpers/cli.ts";
import { readRecords } from "../../core/audit/read.ts";
import { CLOUD_KEY } from "../router/helpers.ts";
import { openaiUpstream } from "../router/upstreams.ts";
import { sandboxSkipReason, systemProgramSkip } from "./sandbox_skip.ts";
import { AGENT_POLICY_HEAD, agentWorkdir } from "./sandbox_helpers.ts";

const skip = sandboxSkipReason() ?? systemProgramSkip(["curl"]);
if (skip) console.log(`skipping inference.local tests: ${skip}`);

Deno.test({
  name: `egress run: the agent reaches the privacy router as http://inference.local${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== null,
  async fn() {
    const local = openaiUpstream("LOCAL");
    const cloud = openaiUpstream("CLOUD");
    const workdir = await agentWorkdir();
    const auditDir = await Deno.makeTempDir({ prefix: "clawcage-inference-audit-" });
    try {
      const policy = `${workdir}/policy.yaml`;
      await Deno.writeTextFile(
        policy,
        `${AGENT_POLICY_HEAD}privacy:
  backends:
    nemotron: { type: openai, base_url: "${local.url}/v1", model: nemotron-local }
    frontier:
      type: openai
      base_url: "${cloud.url}/v1"
      api_key_env: TEST_CLOUD_KEY
      model: frontier-1
  local: nemotron
  cloud: frontier
  keep_local: [US_SSN]
  pseudonymise: [PERSON, EMAIL_ADDRESS]
`,
      );
      const body = JSON.stringify({
        model: "auto",
        messages: [{ role: "user", content: "Please email John Smith at john.smith@example.com." }],
      });
      const script = `echo "base=$OPENAI_BASE_URL key=\${TEST_CLOUD_KEY:-none}";
        curl -sS -H 'content-type: application/json' -d '${body}' "$OPENAI_BASE_URL/chat/completions"`;
      const r = await cli(
        [
          "run",
          "-q",
          "-p",
          policy,
          "-w",
          workdir,
          "--audit-dir",
          auditDir,
          "--",
          "/bin/sh",
          "-c",
          script,
        ],
        { env: { TEST_CLOUD_KEY: CLOUD_KEY } },
      );
      assert.equal(r.code, 0, r.stderr);
      const [first, ...rest] = r.stdout.split("\n");
      assert.equal(first, "base=http://inference.local/v1 key=none");
      const answer = JSON.parse(rest.join("\n"));
      const text = answer.choices[0].message.content;
      assert.match(text, /^CLOUD: Noted: /);
      assert.ok(text.includes("John Smith") && text.includes("john.smith@example.com"), text);
      // The cloud saw placeholders and the router's key; the local backend saw nothing.
      assert.equal(local.received.length, 0);
      assert.equal(cloud.received.length, 1);
      assert.ok(!cloud.received[0].body.includes("John Smith"), cloud.received[0].body);
      assert.equal(cloud.received[0].headers.get("authorization"), `Bearer ${CLOUD_KEY}`);
      // The audit trail has the proxy's request and the router's inference record.
      const events = [...readRecords(auditDir)].map((x) =>
        x.record.event as unknown as Record<string, unknown>
      );
      const http = events.find((e) =>
        e.class === "http" && JSON.stringify(e).includes("inference.local")
      );
      assert.ok(http, "the proxy recorded the request to inference.local");
      const api = events.find((e) => e.class === "api") as { api: Record<string, unknown> };
      assert.equal(api.api.route, "cloud");
      assert.deepEqual(api.api.pii_types, ["EMAIL_ADDRESS", "PERSON"]);
      // Traffic records never hold the values (the launch record holds the operator's command).
      const traffic = events.filter((e) => e.class === "http" || e.class === "api");
      assert.ok(!JSON.stringify(traffic).includes("john.smith@example.com"));
    } finally {
      await local.close();
      await cloud.close();
      await Deno.remove(workdir, { recursive: true });
      await Deno.remove(auditDir, { recursive: true });
    }
  },
});
