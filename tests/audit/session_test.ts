// The Recorder API that the egress proxy and the router record through: the sandbox id is put
// on every event, and a record that cannot be made is reported (false), never thrown, so the
// caller can deny the action.

import assert from "node:assert/strict";
import { join } from "node:path";
import type { HttpActivity } from "../../core/audit/events.ts";
import { AuditSession, NoRecorder } from "../../core/audit/session.ts";
import { auditSettings } from "../../core/audit/settings.ts";
import { readRecords } from "../../core/audit/read.ts";
import { isRoot } from "../helpers/host.ts";
import { cleanup, httpEvent, tempLog } from "./helpers.ts";

Deno.test("audit recorder: events get the sandbox id; durable records are on disk", async () => {
  const t = tempLog();
  try {
    const s = await AuditSession.open(
      { ...auditSettings(undefined, { dir: t.dir }), keyDir: t.keyDir },
      { sandbox: "sb-1", onFailure: () => {} },
    );
    const event: HttpActivity = {
      class: "http",
      activity: "connect",
      decision: "allow",
      dst: { host: "pypi.org", port: 443 },
      http: { method: "CONNECT", url: "pypi.org:443" },
    };
    assert.equal(s.record(event), true);
    assert.equal(await s.recordDurable({ ...event, sandbox: "router" }), true);
    const onDisk = [...readRecords(t.dir)].map((r) => r.record.event);
    await s.close();
    const http = onDisk.filter((e) => e.class === "http");
    assert.deepEqual(http.map((e) => e.class === "http" && e.sandbox), ["sb-1", "router"]);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit recorder: --no-audit records nothing and refuses nothing", async () => {
  const r = new NoRecorder("sb-x");
  assert.equal(r.record(), true);
  assert.equal(await r.recordDurable(), true);
  assert.equal(r.healthy, true);
});

Deno.test({
  name:
    "audit recorder: when the disk is full, record() returns false and the failure is told once" +
    (isRoot ? "" : " (ignored: mounting a tmpfs needs root)"),
  ignore: !isRoot,
  async fn() {
    const t = tempLog();
    const fs = Deno.makeTempDirSync({ prefix: "clawcage-audit-tmpfs-" });
    const mount = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", fs],
    }).outputSync();
    assert.ok(mount.success);
    try {
      const reasons: string[] = [];
      const s = await AuditSession.open(
        { ...auditSettings(undefined, { dir: join(fs, "log") }), keyDir: t.keyDir },
        { sandbox: "sb-2", onFailure: (r) => reasons.push(r) },
      );
      let ok = true;
      for (let i = 0; i < 5000 && ok; i++) ok = await s.recordDurable(httpEvent(i));
      assert.equal(ok, false);
      assert.equal(s.healthy, false);
      assert.equal(s.record(httpEvent(0)), false, "every later record is refused");
      assert.equal(await s.recordDurable(httpEvent(0)), false);
      assert.equal(reasons.length, 1);
      assert.match(reasons[0], /No space left on device/);
      assert.equal(s.failure, reasons[0]);
      await assert.rejects(s.close());
    } finally {
      new Deno.Command("umount", { args: ["-l", fs] }).outputSync();
      Deno.removeSync(fs, { recursive: true });
      cleanup(t);
    }
  },
});

Deno.test("audit recorder: a producer that never yields meets backpressure, not unbounded memory", async () => {
  const t = tempLog();
  try {
    const s = await AuditSession.open(
      {
        ...auditSettings(undefined, { dir: t.dir }),
        keyDir: t.keyDir,
        writer: { maxQueuedBytes: 256 * 1024 },
      },
      { sandbox: "sb-3", onFailure: () => {} },
    );
    // No await in this loop: nothing can be written until it ends.
    let accepted = 0, refused = 0;
    for (let i = 0; i < 5000; i++) s.record(httpEvent(i)) ? accepted++ : refused++;
    assert.ok(accepted > 100 && accepted < 2000, `accepted ${accepted}`);
    assert.equal(accepted + refused, 5000);
    assert.equal(s.healthy, true, "backpressure is not a failure");
    await s.flush();
    // Once written, records are taken again, and the refusals are on record.
    assert.equal(s.record(httpEvent(0)), true);
    await s.close();
    const events = [...readRecords(t.dir)].map((r) => r.record.event);
    assert.equal(events.filter((e) => e.class === "http").length, accepted + 1);
    const notice = events.find((e) => e.class === "audit" && e.activity === "notice");
    assert.ok(notice && notice.class === "audit" && notice.activity === "notice");
    assert.equal(
      notice.message,
      `${refused} records refused while the writer could not keep up ` +
        `(the actions they describe were refused)`,
    );
  } finally {
    cleanup(t);
  }
});
