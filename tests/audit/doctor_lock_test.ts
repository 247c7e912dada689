// doctor's audit log check when another run holds the log: a warning for a directory given
// explicitly (a second run there is refused), fine for the default one (a second run writes its
// own log below it).

import assert from "node:assert/strict";
import { auditChecks } from "../../core/audit/doctor_checks.ts";
import { auditSettings } from "../../core/audit/settings.ts";
import { auditPolicy } from "../../core/policy/audit_section.ts";
import { AuditLog } from "../../core/audit/writer.ts";
import { cleanup, tempLog } from "./helpers.ts";

Deno.test("audit doctor: a held log is a warning when explicit, fine when it is the default", async () => {
  const t = tempLog();
  const held = await AuditLog.open(t.dir, { keyDir: t.keyDir });
  try {
    const explicit = auditSettings(auditPolicy.parse({ log_dir: t.dir, key_dir: t.keyDir }));
    assert.equal(explicit.defaultDir, false);
    const log = (s: typeof explicit) =>
      auditChecks(s).then((cs) => cs.find((c) => c.name === "audit log")!);
    const e = await log(explicit);
    assert.equal(e.status, "warn", JSON.stringify(e));
    assert.match(e.detail, /one writer per directory/);
    const d = await log({ ...explicit, defaultDir: true });
    assert.equal(d.status, "ok", JSON.stringify(d));
    assert.match(d.detail, /another run now writes its own log below it/);
  } finally {
    await held.close();
    cleanup(t);
  }
});
