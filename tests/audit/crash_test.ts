// kill -9 of a writer process in the middle of heavy writing: whatever reached the disk verifies
// up to the crash (a torn last line is reported as such), and the next writer resumes the chain.

import assert from "node:assert/strict";
import { verifyLog } from "../../core/audit/verify.ts";
import { AuditLog } from "../../core/audit/writer.ts";
import { cleanup, httpEvent, tempLog } from "./helpers.ts";

const WRITER = new URL("./fixtures/heavy_writer.ts", import.meta.url).pathname;

async function killMidWrite(dir: string, keyDir: string, afterMs: number): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--no-prompt", "--quiet", WRITER, dir, keyDir],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(new TextDecoder().decode(value), /ready/);
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL");
  reader.releaseLock();
  await child.stdout.cancel();
}

Deno.test("audit crash: kill -9 during heavy writing, verify, resume, verify again", async () => {
  const t = tempLog();
  try {
    let torn = 0;
    for (let round = 0; round < 3; round++) {
      await killMidWrite(t.dir, t.keyDir, 150 + round * 70);
      const r = verifyLog(t.dir, t.keyFile);
      // Either the crash fell between lines (intact, with an unsealed tail) or it left a torn
      // line, which must be the only problem and must come after records that all verify.
      if (r.broken) {
        assert.equal(r.broken.kind, "torn", JSON.stringify(r.broken));
        assert.ok(r.records > 500);
        torn++;
      } else {
        assert.ok(r.records > 500);
      }
      // The next writer takes over (the dead writer's lock is gone with its process).
      const log = await AuditLog.open(t.dir, { keyDir: t.keyDir });
      log.record(httpEvent(round));
      await log.close();
      const after = verifyLog(t.dir, t.keyFile);
      assert.equal(after.broken, null, JSON.stringify(after.broken));
      assert.equal(after.unsealed_tail, 0);
    }
    console.log(`  (${torn} of 3 kills left a torn line)`);
  } finally {
    cleanup(t);
  }
});
