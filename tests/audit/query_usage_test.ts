// `clawcage audit query`: a mistyped --type or --decision is an error listing what exists, not an
// empty result that looks like "no events".

import assert from "node:assert/strict";
import { EVENT_CLASSES, EVENT_TYPES } from "../../core/audit/events.ts";
import { cli } from "../helpers/cli.ts";
import { cleanup, tempLog, writeLog } from "./helpers.ts";

Deno.test("audit query: an unknown --type, class or --decision is one line listing what exists, exit 2", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 10);
    for (const bad of ["bogus", "http.bogus", "HTTP", "http."]) {
      const r = await cli(["audit", "query", "--type", "http", "--type", bad, t.dir]);
      assert.equal(r.code, 2, `${bad}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, "");
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0].startsWith(`clawcage: --type ${bad}: no such event class or type; `));
      for (const c of EVENT_CLASSES) assert.ok(lines[0].includes(c), c);
      for (const x of EVENT_TYPES) assert.ok(lines[0].includes(x), x);
    }
    const d = await cli(["audit", "query", "--decision", "denied", t.dir]);
    assert.equal(d.code, 2);
    assert.equal(
      d.stderr.trim(),
      "clawcage: --decision denied: no such decision; one of: allow, deny, audit",
    );
    // Every listed type and class is accepted.
    const ok = await cli(["audit", "query", "--type", "http.request", "--type", "audit", t.dir]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(ok.stdout.includes("http.request") && ok.stdout.includes("audit.segment"));
  } finally {
    cleanup(t);
  }
});

Deno.test("audit events: the type list covers the event shapes (classes, activities, no duplicates)", () => {
  assert.deepEqual(EVENT_CLASSES, ["network", "http", "process", "file", "api", "config", "audit"]);
  assert.equal(new Set(EVENT_TYPES).size, EVENT_TYPES.length);
  assert.ok(EVENT_TYPES.includes("http.request") && EVENT_TYPES.includes("audit.seal"));
  for (const t of EVENT_TYPES) assert.ok(EVENT_CLASSES.includes(t.split(".")[0] as never), t);
});
