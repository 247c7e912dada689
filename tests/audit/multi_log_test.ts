// A directory of logs, one per writer (as `clawcage service` runs one `clawcage run` per agent,
// each with its own --audit-dir below a common root): verify checks each, query merges them by
// time, tail -f refuses to guess which one to follow.

import assert from "node:assert/strict";
import { join } from "node:path";
import { AuditLog } from "../../core/audit/writer.ts";
import { logsAt, readRecords } from "../../core/audit/read.ts";
import { countDenials } from "../../core/service/denials.ts";
import { cli } from "../helpers/cli.ts";
import { sandboxSkipReason } from "../helpers/host.ts";
import { cleanup, httpEvent, readLines, tempLog, writeLines } from "./helpers.ts";

Deno.test("audit multi-log: verify each, query merged by time, tail -f refuses a root", async () => {
  const t = tempLog();
  try {
    const a = await AuditLog.open(join(t.dir, "agent-a"), { keyDir: t.keyDir });
    const b = await AuditLog.open(join(t.dir, "agent-b"), { keyDir: t.keyDir });
    for (let i = 0; i < 20; i++) {
      (i % 2 ? a : b).record({ ...httpEvent(i), sandbox: i % 2 ? "a" : "b" });
      await new Promise((r) => setTimeout(r, 2));
    }
    await a.close();
    await b.close();
    const v = await cli(["audit", "verify", "--key", t.keyFile, t.dir]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    const lines = v.stdout.trim().split("\n").filter((l) => l.startsWith("intact"));
    assert.equal(lines.length, 2);
    assert.match(lines[0], /agent-a: 1 file\(s\)/);
    assert.match(lines[1], /agent-b: 1 file\(s\)/);
    const q = await cli(["audit", "query", "--json", t.dir]);
    assert.equal(q.code, 0, q.stderr);
    const urls = q.stdout.trim().split("\n").map((l) => JSON.parse(l).event.http.url);
    assert.deepEqual(urls, Array.from({ length: 20 }, (_, i) => httpEvent(i).http.url));
    const f = await cli(["audit", "tail", "-f", t.dir]);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /tail -f follows one log; .* holds 2/);
    // One broken log: verify says which, exit 1.
    const seg = join(t.dir, "agent-b", "audit-000001.jsonl");
    const ls = readLines(seg);
    writeLines(seg, [...ls.slice(0, 4), ...ls.slice(5)]);
    const broken = await cli(["audit", "verify", "--key", t.keyFile, t.dir]);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /^intact: .*agent-a/m);
    assert.match(broken.stdout, /^BROKEN: .*agent-b: audit-000001.jsonl:5/m);
  } finally {
    cleanup(t);
  }
});

const skip = sandboxSkipReason();
Deno.test({
  name: "audit multi-log: two concurrent runs, each with its own log under one root" +
    (skip ? ` (skipped: ${skip})` : ""),
  ignore: skip !== null,
  async fn() {
    const t = tempLog();
    try {
      const run = (name: string) =>
        cli([
          "run",
          "-q",
          "--audit-dir",
          join(t.dir, name),
          "-w",
          "/tmp",
          "--",
          "/bin/sh",
          "-c",
          "sleep 0.5; exit 0",
        ]);
      const [r1, r2] = await Promise.all([run("agent-1"), run("agent-2")]);
      assert.equal(r1.code, 0, r1.stderr);
      assert.equal(r2.code, 0, r2.stderr);
      // The same directory twice at once: the second is refused (one writer per log).
      const same = await Promise.all([run("agent-1"), run("agent-1")]);
      assert.deepEqual(same.map((r) => r.code).sort(), [0, 125]);
      const v = await cli(["audit", "verify", t.dir]);
      assert.equal(v.code, 0, v.stdout);
      assert.equal(v.stdout.split("\n").filter((l) => l.startsWith("intact")).length, 2);
    } finally {
      cleanup(t);
    }
  },
});

Deno.test("audit multi-log: a log with agents' logs below it (the default directory) counts as all of them", async () => {
  const t = tempLog();
  try {
    // clawcage run's log in the root, a service agent's log below it.
    const top = await AuditLog.open(t.dir, { keyDir: t.keyDir });
    const agent = await AuditLog.open(join(t.dir, "agent-a"), { keyDir: t.keyDir });
    for (let i = 0; i < 6; i++) {
      (i % 2 ? agent : top).record({ ...httpEvent(i), sandbox: i % 2 ? "agent" : "run" });
      await new Promise((r) => setTimeout(r, 2));
    }
    await top.close();
    await agent.close();
    assert.deepEqual(logsAt(t.dir), [t.dir, join(t.dir, "agent-a")]);
    const v = await cli(["audit", "verify", "--key", t.keyFile, t.dir]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(v.stdout.trim().split("\n").filter((l) => l.startsWith("intact")).length, 2);
    const q = await cli(["audit", "query", "--json", t.dir]);
    const urls = q.stdout.trim().split("\n").map((l) => JSON.parse(l).event.http.url);
    assert.deepEqual(urls, Array.from({ length: 6 }, (_, i) => httpEvent(i).http.url));
    // The service's denial count sees the agents' logs too.
    const since = Date.now() - 3600_000;
    const denials = countDenials(t.dir, since);
    const expected = [...readRecords(t.dir)].filter((r) =>
      "decision" in r.record.event && r.record.event.decision === "deny"
    ).length;
    assert.ok(expected >= 2, `${expected} denials`); // httpEvent(0) and httpEvent(5)
    assert.equal(denials.count, expected);
  } finally {
    cleanup(t);
  }
});
