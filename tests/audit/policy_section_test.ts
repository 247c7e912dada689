// The policy's `audit` section: defaults, every key, mistakes reported with file:line:column, and
// how it resolves (with --audit-dir / --no-audit) into what the supervisor opens.

import assert from "node:assert/strict";
import { parsePolicy, PolicyError } from "../../core/policy/load.ts";
import { auditSettings } from "../../core/audit/settings.ts";
import { defaultAuditDir, defaultKeyDir } from "../../core/audit/paths.ts";

function problems(yaml: string): string {
  try {
    parsePolicy(yaml, "p.yaml");
  } catch (e) {
    if (e instanceof PolicyError) return e.message;
    throw e;
  }
  assert.fail("policy was accepted");
}

const FULL = `version: 1
audit:
  log_dir: /srv/audit/log
  key_dir: /srv/audit/key
  fsync: always
  seal_every_records: 500
  seal_every_ms: 250
  rotate_bytes: 1048576
  rotate_seconds: 3600
  max_files: 30
  max_age_days: 90
  kernel_denials: enable
  exec_events: false
  export:
    queue_max: 5000
    syslog:
      target: udp://127.0.0.1:514
      facility: local4
    otlp:
      url: http://127.0.0.1:4318/v1/logs
      headers_env:
        Authorization: SIEM_TOKEN
`;

Deno.test("audit policy: no section means the defaults for this user", () => {
  const p = parsePolicy("version: 1\n", "p.yaml");
  assert.equal(p.audit, undefined);
  const s = auditSettings(p.audit);
  assert.equal(s.enabled, true);
  assert.equal(s.dir, defaultAuditDir());
  assert.equal(s.keyDir, defaultKeyDir());
  assert.deepEqual(s.writer.fsync, { intervalMs: 100 });
  assert.equal(s.writer.sealEveryRecords, 10_000);
  assert.equal(s.writer.rotateMs, 86400_000);
  assert.equal(s.kernelDenials, "if_enabled");
  assert.equal(s.execEvents, true);
  assert.equal(s.export, null);
  if (Deno.uid() === 0) {
    assert.equal(s.dir, "/var/log/clawcage/audit");
    assert.equal(s.keyDir, "/var/lib/clawcage/audit-key");
  }
});

Deno.test("audit policy: every key is read and resolved", () => {
  const s = auditSettings(parsePolicy(FULL, "p.yaml").audit);
  assert.equal(s.dir, "/srv/audit/log");
  assert.equal(s.keyDir, "/srv/audit/key");
  assert.equal(s.writer.fsync, "always");
  assert.equal(s.writer.sealEveryRecords, 500);
  assert.equal(s.writer.sealEveryMs, 250);
  assert.equal(s.writer.rotateBytes, 1048576);
  assert.equal(s.writer.rotateMs, 3600_000);
  assert.equal(s.writer.maxFiles, 30);
  assert.equal(s.writer.maxAgeMs, 90 * 86400_000);
  assert.equal(s.kernelDenials, "enable");
  assert.equal(s.execEvents, false);
  assert.equal(s.export?.queue_max, 5000);
  assert.equal(s.export?.syslog?.facility, "local4");
  assert.equal(s.export?.syslog?.app_name, "clawcage");
  assert.equal(s.export?.otlp?.timeout_ms, 5000);
  assert.deepEqual(s.export?.otlp?.headers_env, { Authorization: "SIEM_TOKEN" });
});

Deno.test("audit policy: --audit-dir and --no-audit override the section", () => {
  const a = parsePolicy(FULL, "p.yaml").audit;
  assert.equal(auditSettings(a, { dir: "/x/y" }).dir, "/x/y");
  assert.equal(auditSettings(a, { dir: "/x/y" }).keyDir, "/srv/audit/key");
  assert.equal(auditSettings(a, { disabled: true }).enabled, false);
  assert.equal(
    auditSettings(parsePolicy("version: 1\naudit:\n  enabled: false\n", "p.yaml").audit).enabled,
    false,
  );
});

Deno.test("audit policy: mistakes point at file:line:column", () => {
  assert.match(
    problems("version: 1\naudit:\n  log_dri: /x\n"),
    /^p\.yaml:3:3: unknown key "log_dri" in audit \(did you mean "log_dir"\?\)/,
  );
  assert.match(
    problems("version: 1\naudit:\n  log_dir: var/log\n"),
    /^p\.yaml:3:\d+: audit\.log_dir: path must be absolute/,
  );
  assert.match(
    problems("version: 1\naudit:\n  log_dir: /a\n  key_dir: /a/key\n"),
    /^p\.yaml:4:\d+: audit\.key_dir: key_dir must not be inside log_dir/,
  );
  assert.match(
    problems("version: 1\naudit:\n  fsync: sometimes\n"),
    /^p\.yaml:3:\d+: audit\.fsync: expected one of "batched", "always", "none"/,
  );
  assert.match(
    problems("version: 1\naudit:\n  export:\n    syslog:\n      target: 10.0.0.1:514\n"),
    /^p\.yaml:5:\d+: audit\.export\.syslog\.target: syslog target must be unix:\/\/\/PATH/,
  );
  assert.match(
    problems("version: 1\naudit:\n  export:\n    syslog:\n      target: tcp://host\n"),
    /audit\.export\.syslog\.target: syslog target needs HOST:PORT/,
  );
  assert.match(
    problems("version: 1\naudit:\n  export:\n    otlp:\n      url: ftp://x/v1/logs\n"),
    /^p\.yaml:5:\d+: audit\.export\.otlp\.url: otlp url must be http/,
  );
  assert.match(
    problems("version: 1\naudit:\n  export:\n    otlp:\n      url: http://u:p@x/v1/logs\n"),
    /must not carry credentials/,
  );
  assert.match(
    problems("version: 1\naudit:\n  rotate_bytes: 10\n"),
    /^p\.yaml:3:\d+: audit\.rotate_bytes: /,
  );
  assert.match(
    problems("version: 1\naudit:\n  export:\n    sylog: {}\n"),
    /unknown key "sylog" in audit\.export \(did you mean "syslog"\?\)/,
  );
});

Deno.test("audit policy: an export section without targets exports nothing", () => {
  const s = auditSettings(parsePolicy("version: 1\naudit:\n  export: {}\n", "p.yaml").audit);
  assert.equal(s.export, null);
});
