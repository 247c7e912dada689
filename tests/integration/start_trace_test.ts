// CLAWCAGE_TRACE_START=1: every process of `clawcage run` prints its start-up phases on stderr on
// one timeline (core/start_trace.ts); without it, nothing; the agent never sees the variable.

import assert from "node:assert/strict";
import { cli } from "../helpers/cli.ts";
import { sandboxSkipReason } from "../helpers/host.ts";

const skip = sandboxSkipReason();
const LINE = /^clawcage: trace: \+(\d+\.\d) ms (supervisor|pdp|stage) (.+)$/;

Deno.test({
  name: `start trace: supervisor, PDP and stage phases on one timeline${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== null,
  async fn() {
    // The agent waits a little so that the PDP is up before it exits, and prints its env.
    const args = ["run", "-q", "--no-audit", "-w", "/tmp", "--", "/bin/sh", "-c", "sleep 0.5; env"];
    const r = await cli(args, { env: { CLAWCAGE_TRACE_START: "1" } });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /CLAWCAGE_TRACE_START/);
    const at = new Map<string, number>();
    for (const line of r.stderr.split("\n").filter(Boolean)) {
      const m = LINE.exec(line);
      assert.ok(m, `not a trace line: ${line}`);
      at.set(`${m[2]} ${m[3]}`, Number(m[1]));
    }
    const when = (phase: string) => {
      const t = at.get(phase);
      assert.ok(t !== undefined, `no "${phase}" in:\n${r.stderr}`);
      return t;
    };
    // One timeline: the stage's and the PDP's phases fall after the supervisor started them.
    const order = [
      "supervisor modules loaded",
      "supervisor policy loaded",
      "supervisor stage spawned",
      "stage modules loaded",
      "stage agent spawned",
      "stage agent exited",
      "supervisor stage exited",
      "supervisor audit trail closed",
    ];
    for (let i = 1; i < order.length; i++) {
      assert.ok(when(order[i - 1]) <= when(order[i]), `${order[i - 1]} before ${order[i]}`);
    }
    assert.ok(when("supervisor pdp spawned") <= when("pdp locked down"));
    assert.ok(when("pdp locked down") <= when("supervisor pdp answering"));
  },
});

Deno.test({
  name: `start trace: off without CLAWCAGE_TRACE_START${skip ? ` (skipped: ${skip})` : ""}`,
  ignore: skip !== null,
  async fn() {
    const r = await cli(["run", "-q", "--no-audit", "-w", "/tmp", "--", "/bin/true"]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /trace/);
  },
});
