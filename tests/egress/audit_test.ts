// Egress audit through the real audit log: every connection and request lands in the
// hash-chained log with sandbox, pid, binary, host, resolved IP, port, method, path, decision,
// rule, bytes and duration, and the log verifies.

import assert from "node:assert/strict";
import { join } from "node:path";
import { AuditLog } from "../../core/audit/writer.ts";
import { readRecords } from "../../core/audit/read.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import { EgressProxy } from "../../core/egress/proxy.ts";
import { httpUpstream, rawExchange, tableDecide, testResolver } from "./helpers.ts";

Deno.test("egress events in the real audit log, chain verified", async () => {
  const root = Deno.makeTempDirSync({ prefix: "clawcage-egress-audit-" });
  const up = await httpUpstream();
  const log = await AuditLog.open(join(root, "log"), { keyDir: join(root, "key") });
  const proxy = new EgressProxy({
    sandbox: "sb-audit",
    decide: tableDecide([{ host: "api.test", port: up.port, binary: "/usr/bin/curl" }]),
    resolve: testResolver(),
    audit: log,
  });
  const sock = join(root, "egress.sock");
  await proxy.listenUnix(sock);
  try {
    const caller = 'CLAWCAGE-CALLER {"pid":4242,"exe":"/usr/bin/curl"}\r\n';
    const ok = await rawExchange(
      0,
      `${caller}GET http://api.test:${up.port}/v1/x?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
      { path: sock },
    );
    assert.match(ok, /^HTTP\/1.1 200/);
    const denied = await rawExchange(
      0,
      `${caller}CONNECT evil.test:443 HTTP/1.1\r\n\r\n`,
      { path: sock },
    );
    assert.match(denied, /^HTTP\/1.1 403/);
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    await proxy.close();
    await up.close();
    await log.close();
  }
  try {
    const events = [...readRecords(join(root, "log"))].map((r) => r.record.event);
    const req = events.find((e) => e.class === "http" && e.activity === "request");
    assert.ok(req && req.class === "http");
    assert.equal(req.sandbox, "sb-audit");
    // A caller line comes from the bridge: its pid is in the sandbox's PID namespace.
    assert.deepEqual(req.actor, { ns_pid: 4242, exe: "/usr/bin/curl" });
    assert.deepEqual(req.dst, { host: "api.test", port: up.port, ip: "127.0.0.1" });
    assert.equal(req.http.method, "GET");
    assert.equal(req.http.url, `http://api.test:${up.port}/v1/x?q=1`);
    assert.equal(req.http.status, 200);
    assert.equal(req.decision, "allow");
    assert.equal(req.rule, "test.endpoints[0]");
    assert.ok(req.bytes_out! > 0 && req.bytes_in! > 0 && req.duration_ms! >= 0);
    const close = events.find((e) => e.class === "network" && e.activity === "close");
    assert.ok(close && close.class === "network" && close.bytes_in! > 0);
    const connect = events.find((e) => e.class === "http" && e.activity === "connect");
    assert.ok(connect && connect.class === "http");
    assert.equal(connect.decision, "deny");
    assert.match(connect.reason ?? "", /no network_policies endpoint allows evil\.test:443/);
    const report = verifyLog(join(root, "log"), join(root, "key", "audit.key"));
    assert.ok(report.ok, JSON.stringify(report.broken));
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
