// The writer: one writer per log, chain across reopen, torn-tail recovery, key handling, and
// the failed state on a read-only or full file system (root: real tmpfs mounts).

import assert from "node:assert/strict";
import { join } from "node:path";
import { lineHash } from "../../core/audit/chain.ts";
import type { AuditRecord } from "../../core/audit/events.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import { AuditFailedError, AuditLog, AuditOpenError } from "../../core/audit/writer.ts";
import { cleanup, httpEvent, readLines, segmentPath, tempLog, writeLog } from "./helpers.ts";

const isRoot = Deno.uid() === 0;

Deno.test("audit writer: a second writer on the same log is refused with a clear error", async () => {
  const t = tempLog();
  try {
    const first = await AuditLog.open(t.dir, { keyDir: t.keyDir });
    await assert.rejects(
      () => AuditLog.open(t.dir, { keyDir: t.keyDir }),
      (e: Error) => e instanceof AuditOpenError && /in use by another writer/.test(e.message),
    );
    first.record(httpEvent(1));
    await first.close();
    // Once the first is closed, a new writer may open.
    const second = await AuditLog.open(t.dir, { keyDir: t.keyDir });
    await second.close();
    assert.equal(verifyLog(t.dir, t.keyFile).broken, null);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit writer: a second writer in another process is refused", async () => {
  const t = tempLog();
  try {
    const log = await AuditLog.open(t.dir, { keyDir: t.keyDir });
    const code = `import { AuditLog } from ${
      JSON.stringify(
        new URL("../../core/audit/writer.ts", import.meta.url).href,
      )
    };
      try { await AuditLog.open(${JSON.stringify(t.dir)}, { keyDir: ${
      JSON.stringify(t.keyDir)
    } }); console.log("opened"); }
      catch (e) { console.log(e.message); }`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.match(new TextDecoder().decode(out.stdout), /in use by another writer/);
    await log.close();
  } finally {
    cleanup(t);
  }
});

Deno.test("audit writer: reopening continues the chain in a new segment", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 50);
    await writeLog(t, 50);
    const last1 = readLines(segmentPath(t, 1)).at(-1)!;
    const head2 = JSON.parse(readLines(segmentPath(t, 2))[0]) as AuditRecord;
    assert.equal(head2.prev, lineHash(last1));
    assert.equal(head2.seq, (JSON.parse(last1) as AuditRecord).seq + 1);
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.broken, null);
    assert.equal(r.files, 2);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit writer: a torn last line is reported, and the next writer records it and resumes", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 30);
    const seg = segmentPath(t, 1);
    const good = Deno.statSync(seg).size;
    Deno.writeTextFileSync(seg, '{"seq":99,"time":"2026-', { append: true });
    assert.equal(verifyLog(t.dir, t.keyFile).broken?.kind, "torn");

    const log = await AuditLog.open(t.dir, { keyDir: t.keyDir });
    log.record(httpEvent(1));
    await log.close();
    const header = JSON.parse(readLines(segmentPath(t, 2))[0]) as AuditRecord;
    assert.deepEqual(
      header.event.class === "audit" && header.event.activity === "segment"
        ? header.event.recovered
        : null,
      { file: "audit-000001.jsonl", good_bytes: good, torn_bytes: 23 },
    );
    // The torn bytes stay as evidence; the log verifies, with a note.
    assert.equal(Deno.statSync(seg).size, good + 23);
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.broken, null);
    assert.ok(r.notes.some((n) => /partial line .* resumed/.test(n)), r.notes.join("; "));
  } finally {
    cleanup(t);
  }
});

Deno.test("audit writer: the key is 0600 in its own directory, never inside the log directory", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 1);
    assert.equal(Deno.statSync(t.keyFile).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(t.keyDir).mode! & 0o777, 0o700);
    assert.ok(![...Deno.readDirSync(t.dir)].some((e) => e.name.includes("key")));
    await assert.rejects(
      () => AuditLog.open(t.dir, { keyDir: join(t.dir, "keys") }),
      /must not be inside the log directory/,
    );
    Deno.chmodSync(t.keyFile, 0o644);
    await assert.rejects(() => AuditLog.open(t.dir, { keyDir: t.keyDir }), /must be 600/);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit writer: records are durable after flush(), and seq numbers are returned in order", async () => {
  const t = tempLog();
  try {
    const log = await AuditLog.open(t.dir, { keyDir: t.keyDir, fsync: "always" });
    const seqs = [log.record(httpEvent(1)), log.record(httpEvent(2)), log.record(httpEvent(3))];
    await log.flush();
    assert.deepEqual(seqs, [seqs[0], seqs[0] + 1, seqs[0] + 2]);
    const lines = readLines(segmentPath(t, 1)).map((l) => JSON.parse(l) as AuditRecord);
    assert.deepEqual(lines.slice(-3).map((r) => r.seq), seqs);
    await log.close();
    assert.throws(() => log.record(httpEvent(4)), AuditFailedError);
  } finally {
    cleanup(t);
  }
});

/** A small tmpfs at a fresh mount point (root only). */
async function withTmpfs(sizeKb: number, fn: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = Deno.makeTempDirSync({ prefix: "clawcage-audit-mnt-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${sizeKb}k`, "tmpfs", mnt],
  }).output();
  assert.equal(mount.code, 0, new TextDecoder().decode(mount.stderr));
  try {
    await fn(mnt);
  } finally {
    const um = await new Deno.Command("umount", { args: [mnt] }).output();
    assert.equal(um.code, 0, `umount: ${new TextDecoder().decode(um.stderr)}`);
    Deno.removeSync(mnt);
  }
}

Deno.test({
  name: "audit writer: opening on a read-only file system fails with a clear error" +
    (isRoot ? "" : " (ignored: needs root to mount a tmpfs)"),
  ignore: !isRoot,
  async fn() {
    const t = tempLog();
    try {
      await withTmpfs(1024, async (mnt) => {
        const ro = await new Deno.Command("mount", { args: ["-o", "remount,ro", mnt] }).output();
        assert.equal(ro.code, 0, new TextDecoder().decode(ro.stderr));
        await assert.rejects(
          () => AuditLog.open(mnt, { keyDir: t.keyDir }),
          (e: Error) => e instanceof AuditOpenError && /Read-only file system/.test(e.message),
        );
      });
    } finally {
      cleanup(t);
    }
  },
});

/** Whether `chattr +i` works here (root on ext4/xfs/btrfs, not tmpfs or overlay). */
function immutableWorks(): boolean {
  if (!isRoot) return false;
  const d = Deno.makeTempDirSync();
  try {
    return new Deno.Command("chattr", { args: ["+i", d] }).outputSync().code === 0;
  } catch {
    return false;
  } finally {
    new Deno.Command("chattr", { args: ["-i", d] }).outputSync();
    Deno.removeSync(d);
  }
}
const canImmutable = immutableWorks();

Deno.test({
  name: "audit writer: a log directory that becomes unwritable makes the log unhealthy at the " +
    "next rotation, not silent" + (canImmutable ? "" : " (ignored: needs root and chattr +i)"),
  ignore: !canImmutable,
  async fn() {
    const t = tempLog();
    let log: AuditLog | null = null;
    try {
      let notified: Error | null = null;
      log = await AuditLog.open(t.dir, {
        keyDir: t.keyDir,
        rotateBytes: 4000,
        onFailure: (e) => (notified = e),
      });
      log.record(httpEvent(0));
      await log.flush();
      assert.equal(log.healthy, true);
      assert.equal(new Deno.Command("chattr", { args: ["+i", t.dir] }).outputSync().code, 0);
      let thrown: unknown = null;
      try {
        for (let i = 0; i < 200; i++) {
          log.record(httpEvent(i));
          await log.flush();
        }
      } catch (e) {
        thrown = e;
      }
      assert.ok(thrown instanceof AuditFailedError, `got ${thrown}`);
      assert.match((thrown as Error).message, /cannot write .*Operation not permitted/);
      assert.equal(log.healthy, false);
      assert.ok(notified, "onFailure was called");
      assert.throws(() => log!.record(httpEvent(1)), /refuses further records/);
      await assert.rejects(() => log!.close(), AuditFailedError);
    } finally {
      new Deno.Command("chattr", { args: ["-i", t.dir] }).outputSync();
      await log?.close().catch(() => {});
      cleanup(t);
    }
  },
});

Deno.test({
  name: "audit writer: a full disk makes the log unhealthy and says so" +
    (isRoot ? "" : " (ignored: needs root to mount a tmpfs)"),
  ignore: !isRoot,
  async fn() {
    const t = tempLog();
    try {
      await withTmpfs(64, async (mnt) => {
        const log = await AuditLog.open(mnt, { keyDir: t.keyDir });
        let thrown: unknown = null;
        try {
          for (let i = 0; i < 5000; i++) {
            log.record(httpEvent(i));
            if (i % 100 === 99) await log.flush();
          }
        } catch (e) {
          thrown = e;
        }
        assert.ok(thrown instanceof AuditFailedError, `got ${thrown}`);
        assert.match((thrown as Error).message, /No space left on device/);
        assert.equal(log.healthy, false);
        await log.close().catch(() => {});
        // What reached the disk still verifies up to the failure.
        const r = verifyLog(mnt, t.keyFile);
        assert.ok(r.broken === null || r.broken.kind === "torn", JSON.stringify(r.broken));
      });
    } finally {
      cleanup(t);
    }
  },
});
