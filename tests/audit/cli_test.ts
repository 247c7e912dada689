// `clawcage audit verify|query|tail` as a user runs them: exit codes, one-line errors, --json.

import assert from "node:assert/strict";
import { cleanup, readLines, segmentPath, tempLog, writeLines, writeLog } from "./helpers.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--no-prompt", "--quiet", MAIN, "audit", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

Deno.test("audit cli: verify exits 0 when intact and 1 naming file and seq when broken", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 100);
    const ok = await cli("verify", "--key", t.keyFile, t.dir);
    assert.equal(ok.code, 0, ok.out + ok.err);
    assert.match(
      ok.out,
      /^intact: .* 1 file\(s\), 103 records \(seq 1\.\.103\), \d+ seals verified/,
    );

    const lines = readLines(segmentPath(t, 1));
    lines[41] = lines[41].replace("/v1/items/", "/v1/itemX/");
    writeLines(segmentPath(t, 1), lines);
    const bad = await cli("verify", "--key", t.keyFile, t.dir);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /^BROKEN: .*audit-000001\.jsonl:42 \(seq 42\): edited:/);

    const json = await cli("verify", "--json", t.dir);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.out);
    assert.equal(report.ok, false);
    assert.equal(report.broken.seq, 42);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit cli: a missing log or a bad option is one line and exit 2", async () => {
  const missing = await cli("verify", "/nonexistent/clawcage-audit");
  assert.equal(missing.code, 2);
  assert.equal(missing.err.trim().split("\n").length, 1);
  assert.match(missing.err, /^clawcage: cannot read audit log/);
  const badTime = await cli("query", "--since", "yesterday", "/tmp");
  assert.equal(badTime.code, 2);
  assert.match(badTime.err, /--since yesterday: not an ISO 8601 time/);
});

Deno.test("audit cli: query filters by type, decision, sandbox and host; tail prints the last", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 60); // helpers.httpEvent: deny when i % 5 == 0, sandbox sb-(i%3)
    const deny = await cli("query", "--decision", "deny", "--json", t.dir);
    assert.equal(deny.code, 0);
    const recs = deny.out.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(recs.length, 12);
    assert.ok(recs.every((r) => r.event.decision === "deny"));

    const host = await cli("query", "--host", "*.example.com", "--sandbox", "sb-1", t.dir);
    const hl = host.out.trim().split("\n");
    // odd i (api.example.com) with i % 3 == 1: i = 1, 7, 13, ..., 55 -> 10 events
    assert.equal(hl.length, 10);
    assert.match(hl[0], /#\d+ http\.request ALLOW \[sb-1\] GET https:\/\/api\.example\.com\//);

    const seals = await cli("query", "--type", "audit.seal", t.dir);
    assert.ok(seals.out.trim().split("\n").every((l) => l.includes("audit.seal")));
    const none = await cli("query", "--until", "2000-01-01", t.dir);
    assert.equal(none.out, "");

    const tail = await cli("tail", "-n", "3", t.dir);
    const tl = tail.out.trim().split("\n");
    assert.equal(tl.length, 3);
    assert.match(tl[2], /items\/59$/);
  } finally {
    cleanup(t);
  }
});
