// `clawcage audit verify` without --key/--pubkey: it finds the writer's key directory (a policy's
// audit.key_dir, or a key directory that holds the log's sealed head) and so catches a cut-off
// end; where it finds no key it says the end was not checked instead of a plain "intact".

import assert from "node:assert/strict";
import { join } from "node:path";
import { verifyLog } from "../../core/audit/verify.ts";
import { writerKeys } from "../../core/audit/verify_keys.ts";
import { cli } from "../helpers/cli.ts";
import {
  cleanup,
  readLines,
  segmentPath,
  type TempLog,
  tempLog,
  writeLines,
  writeLog,
} from "./helpers.ts";

const NO_KEY = "end of log not checked: no key; pass --key/--pubkey";

/** A log of `n` events with its last `cut` records removed, and a policy naming its dirs. */
async function cutLog(n: number, cut: number): Promise<{ t: TempLog; policy: string }> {
  const t = tempLog();
  await writeLog(t, n);
  if (cut > 0) {
    const lines = readLines(segmentPath(t, 1));
    writeLines(segmentPath(t, 1), lines.slice(0, -cut));
  }
  const policy = join(t.root, "policy.yaml");
  Deno.writeTextFileSync(
    policy,
    `version: 1\naudit:\n  log_dir: ${t.dir}\n  key_dir: ${t.keyDir}\n`,
  );
  return { t, policy };
}

Deno.test("audit verify: --policy finds the writer's key and catches 5 records cut from the end", async () => {
  const { t, policy } = await cutLog(20, 5);
  try {
    const withPolicy = await cli(["audit", "verify", "--policy", policy, t.dir]);
    assert.equal(withPolicy.code, 1, withPolicy.stdout + withPolicy.stderr);
    assert.match(withPolicy.stdout, /^BROKEN: .*: truncated: the sealed head says seal seq/);
    // PATH left out: the policy's log_dir.
    const noPath = await cli(["audit", "verify", "--json", "--policy", policy]);
    assert.equal(noPath.code, 1, noPath.stderr);
    const report = JSON.parse(noPath.stdout);
    assert.equal(report.broken.kind, "truncated");
    assert.equal(report.path, t.dir);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: without any key it says the end of the log was not checked", async () => {
  const { t } = await cutLog(20, 5);
  try {
    const plain = await cli(["audit", "verify", t.dir]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(
      plain.stdout.startsWith(`intact (${NO_KEY}): ${t.dir}: 1 file(s)`),
      plain.stdout,
    );
    const json = await cli(["audit", "verify", "--json", t.dir]);
    assert.equal(json.code, 0, json.stderr);
    const r = JSON.parse(json.stdout);
    assert.equal(r.ok, true);
    assert.equal(r.end_checked, false);
    assert.equal(r.end_warning, NO_KEY);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: an intact log with the writer's key says the end was checked", async () => {
  const { t, policy } = await cutLog(20, 0);
  try {
    const r = await cli(["audit", "verify", "--policy", policy, t.dir]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^intact: .*seals verified with key [0-9a-f]+, .*sealed head matches/);
    assert.match(r.stdout, /note: keys from .*\/key, which holds this log's sealed head/);
    const json = JSON.parse((await cli(["audit", "verify", "--json", "--policy", policy])).stdout);
    assert.equal(json.end_checked, true);
    assert.equal(json.end_warning, null);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: a key directory is used for a log only when it holds that log's sealed head", async () => {
  const a = tempLog();
  const b = tempLog();
  try {
    await writeLog(a, 10);
    await writeLog(b, 10);
    // a's key directory holds a's head: found without being named.
    const own = writerKeys(a.dir, a.keyDir, null);
    assert.equal(own.keyFile, a.keyFile);
    assert.match(own.source!, /holds this log's sealed head/);
    // b's key directory holds other keys and no head of a: not used (it would fail every seal).
    assert.deepEqual(writerKeys(a.dir, b.keyDir, null), { source: null });
    // Named (a policy, or the default log): used, and a wrong key is then reported.
    const named = writerKeys(a.dir, b.keyDir, "audit.key_dir of p.yaml");
    assert.equal(named.keyFile, b.keyFile);
    const wrong = verifyLog(a.dir, named.keyFile, named.pubFile);
    assert.equal(wrong.broken?.kind, "seal");
  } finally {
    cleanup(a);
    cleanup(b);
  }
});

Deno.test("audit verify: --key or --pubkey naming a directory is one clear line, exit 2", async () => {
  const { t } = await cutLog(5, 0);
  try {
    for (const flag of ["--key", "--pubkey"]) {
      const r = await cli(["audit", "verify", flag, t.keyDir, t.dir]);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0],
        /^clawcage: audit (public )?key .*\/key is a directory; give the key file \(.*\/key\/audit/,
      );
      assert.doesNotMatch(r.stderr, /os error/);
    }
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify --json: a broken log still reports first_seq and last_seq", async () => {
  const { t } = await cutLog(50, 0);
  try {
    const lines = readLines(segmentPath(t, 1));
    lines[20] = lines[20].replace("/v1/items/", "/v1/itemX/");
    writeLines(segmentPath(t, 1), lines);
    const r = await cli(["audit", "verify", "--json", "--key", t.keyFile, t.dir]);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.broken.kind, "edited");
    assert.equal(report.broken.seq, 21);
    assert.equal(report.first_seq, 1);
    assert.equal(report.last_seq, 21); // the last record read: where verification stopped
    assert.match(report.log_id, /^[0-9a-f-]+$/);
  } finally {
    cleanup(t);
  }
});
