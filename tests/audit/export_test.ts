// Export to real loopback collectors started here: syslog over UDP, TCP (octet counting) and a
// Unix datagram socket, OTLP/HTTP JSON; retry with backoff; a dead collector never blocks or
// drops local records, and what the bounded export queue dropped is recorded locally.

import assert from "node:assert/strict";
import dgram from "node:dgram";
import { join } from "node:path";
import { UnixDatagram } from "../../ffi/unix_dgram.ts";
import type { AuditNotice, AuditRecord } from "../../core/audit/events.ts";
import { formatSyslog, syslogFormat } from "../../core/audit/export/syslog.ts";
import { readRecords } from "../../core/audit/read.ts";
import { AuditSession } from "../../core/audit/session.ts";
import { auditSettings } from "../../core/audit/settings.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import { parsePolicy } from "../../core/policy/load.ts";
import { cli } from "../helpers/cli.ts";
import { cleanup, httpEvent, type TempLog, tempLog } from "./helpers.ts";

function settingsFor(t: TempLog, exportYaml: string) {
  const p = parsePolicy(
    `version: 1\naudit:\n  log_dir: ${t.dir}\n  key_dir: ${t.keyDir}\n  export:\n${exportYaml}`,
    "p.yaml",
  );
  return auditSettings(p.audit);
}

async function openSession(t: TempLog, exportYaml: string): Promise<AuditSession> {
  return await AuditSession.open(settingsFor(t, exportYaml), {
    sandbox: "sb-export",
    onFailure: (r) => {
      throw new Error(`unexpected log failure: ${r}`);
    },
  });
}

async function until(cond: () => boolean, ms = 10_000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const RFC5424 =
  /^<(\d+)>1 (\d{4}-\d\d-\d\dT[\d:.]+Z) (\S+) clawcage (\d+) (\S+) \[clawcage seq="(\d+)"\] (\{.*\})$/;

/**
 * The exported lines are exactly the local log's lines, in order, each once, except records
 * written after export stopped at close (the final seal).
 */
function assertSameRecords(exported: string[], local: AuditRecord[]): void {
  const seqs = exported.map((l) => JSON.parse(l).seq as number);
  assert.deepEqual(seqs, local.slice(0, seqs.length).map((r) => r.seq), "in order, once");
  assert.ok(seqs.length >= local.length - 1, `${seqs.length} of ${local.length} exported`);
  for (const l of exported) assert.equal(JSON.stringify(JSON.parse(l)), l, "whole lines");
}

function localRecords(t: TempLog): AuditRecord[] {
  return [...readRecords(t.dir)].map((r) => r.record);
}

Deno.test("audit export: RFC 5424 message for a record", () => {
  const f = syslogFormat({
    target: "udp://127.0.0.1:514",
    facility: "authpriv",
    app_name: "clawcage",
  });
  const line = JSON.stringify({
    seq: 42,
    time: "2026-11-24T20:09:56.711Z",
    prev: "0".repeat(64),
    event: httpEvent(5), // decision deny
  });
  const m = RFC5424.exec(formatSyslog(line, f));
  assert.ok(m, formatSyslog(line, f));
  assert.equal(Number(m[1]), 10 * 8 + 4, "authpriv.warning for a denial");
  assert.equal(m[2], "2026-11-24T20:09:56.711Z");
  assert.equal(m[5], "http.request");
  assert.equal(m[6], "42");
  assert.equal(m[7], line);
  const allow = JSON.stringify({
    seq: 1,
    time: "2026-11-24T20:09:56.711Z",
    prev: "",
    event: httpEvent(1),
  });
  assert.equal(Number(RFC5424.exec(formatSyslog(allow, f))![1]), 10 * 8 + 6, "info");
});

Deno.test("audit export: syslog over UDP to a loopback collector, every record in order", async () => {
  const t = tempLog();
  const got: string[] = [];
  const server = dgram.createSocket("udp4");
  server.on("message", (m) => got.push(new TextDecoder().decode(m)));
  await new Promise<void>((r) => server.bind(0, "127.0.0.1", r));
  const port = server.address().port;
  try {
    const s = await openSession(t, `    syslog:\n      target: udp://127.0.0.1:${port}\n`);
    // UDP gives no flow control: a burst beyond the receiver's buffer is lost without notice
    // (documented). Paced like real traffic, every record arrives.
    for (let i = 0; i < 300; i++) {
      assert.ok(s.record(httpEvent(i)));
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 5));
    }
    const http = () => got.filter((g) => RFC5424.exec(g)![5] === "http.request").length;
    await until(() => http() >= 300, 10_000, "300 syslog datagrams");
    await s.close();
    // Every record of the log (segment header and seals too, so a collector can check the
    // chain), in order, once; only the final seal, written after export stopped, is not sent.
    assertSameRecords(got.map((g) => RFC5424.exec(g)![7]), localRecords(t));
    const rec = JSON.parse(
      got.map((g) => RFC5424.exec(g)!).find((m) => m[5] === "http.request")![7],
    );
    assert.equal(rec.event.sandbox, "sb-0");
  } finally {
    server.close();
    cleanup(t);
  }
});

Deno.test("audit export: syslog over TCP with octet-counting framing", async () => {
  const t = tempLog();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const frames: string[] = [];
  const accept = (async () => {
    const conn = await listener.accept();
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) break;
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
      for (;;) {
        const sp = buf.indexOf(0x20);
        if (sp === -1) break;
        const len = Number(new TextDecoder().decode(buf.subarray(0, sp)));
        if (buf.length < sp + 1 + len) break;
        frames.push(new TextDecoder().decode(buf.subarray(sp + 1, sp + 1 + len)));
        buf = buf.slice(sp + 1 + len);
      }
    }
    conn.close();
  })();
  try {
    const s = await openSession(
      t,
      `    syslog:\n      target: tcp://127.0.0.1:${listener.addr.port}\n      facility: local4\n`,
    );
    for (let i = 0; i < 500; i++) s.record(httpEvent(i));
    await until(() => frames.length >= 500, 10_000, "500 TCP frames");
    await s.close();
    for (const f of frames) assert.match(f, RFC5424);
    assert.equal(Number(RFC5424.exec(frames[0])![1]) >> 3, 20, "local4");
  } finally {
    listener.close();
    await accept.catch(() => {});
    cleanup(t);
  }
});

Deno.test("audit export: syslog to a Unix datagram socket (as /dev/log), bursts past its queue", async () => {
  const t = tempLog();
  const path = join(t.root, "log.sock");
  const server = UnixDatagram.bind(path);
  const got: string[] = [];
  try {
    const s = await openSession(t, `    syslog:\n      target: unix://${path}\n`);
    // Far more than the socket's queue (net.unix.max_dgram_qlen, 10 by default) at once.
    for (let i = 0; i < 1000; i++) s.record(httpEvent(i));
    await until(
      () => {
        for (let d; (d = server.receive()) !== null;) got.push(new TextDecoder().decode(d));
        return got.length >= 1000;
      },
      20_000,
      "1000 datagrams",
    );
    await s.close();
    for (let d; (d = server.receive()) !== null;) got.push(new TextDecoder().decode(d));
    const seqs = got.map((g) => RFC5424.exec(g)!).filter((m) => m[5] === "http.request")
      .map((m) => Number(m[6]));
    const local = localRecords(t).filter((r) => r.event.class === "http").map((r) => r.seq);
    assert.deepEqual(seqs.slice(0, 1000), local, "every record once, in order");
  } finally {
    server.close();
    cleanup(t);
  }
});

interface OtlpReceiver {
  url: string;
  bodies: { resourceLogs: { scopeLogs: { logRecords: Record<string, unknown>[] }[] }[] }[];
  requests: number;
  headers: Headers[];
  close(): Promise<void>;
}

function otlpReceiver(failFirst = 0, status = 503): OtlpReceiver {
  const r: OtlpReceiver = {
    url: "",
    bodies: [],
    requests: 0,
    headers: [],
    close: () => server.shutdown(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    r.requests++;
    const body = await req.json();
    if (r.requests <= failFirst) return new Response("busy", { status });
    r.headers.push(req.headers);
    r.bodies.push(body);
    return Response.json({});
  });
  r.url = `http://127.0.0.1:${server.addr.port}/v1/logs`;
  return r;
}

/** The record lines the receiver got. */
function bodies(r: OtlpReceiver): string[] {
  return logRecords(r).map((x) => (x as { body: { stringValue: string } }).body.stringValue);
}

function httpBodies(r: OtlpReceiver): string[] {
  return bodies(r).filter((b) => JSON.parse(b).event.class === "http");
}

function logRecords(r: OtlpReceiver) {
  return r.bodies.flatMap((b) =>
    b.resourceLogs.flatMap((rl) => rl.scopeLogs.flatMap((s) => s.logRecords))
  );
}

Deno.test("audit export: OTLP/HTTP JSON logs to a loopback receiver", async () => {
  const t = tempLog();
  const recv = otlpReceiver();
  Deno.env.set("CLAWCAGE_TEST_OTLP_TOKEN", "Bearer s3cret");
  try {
    const s = await openSession(
      t,
      `    otlp:\n      url: ${recv.url}\n      batch_max: 50\n      headers_env:\n        Authorization: CLAWCAGE_TEST_OTLP_TOKEN\n`,
    );
    for (let i = 0; i < 200; i++) s.record(httpEvent(i));
    await until(() => httpBodies(recv).length >= 200, 10_000, "200 log records");
    await s.close();
    assertSameRecords(bodies(recv), localRecords(t));
    const recs = logRecords(recv).filter((r) =>
      JSON.parse((r as { body: { stringValue: string } }).body.stringValue).event.class === "http"
    );
    assert.ok(recv.bodies.every((b) => b.resourceLogs[0].scopeLogs[0].logRecords.length <= 50));
    assert.equal(recv.headers[0].get("authorization"), "Bearer s3cret");
    const first = recs[0] as {
      body: { stringValue: string };
      severityText: string;
      timeUnixNano: string;
      attributes: { key: string; value: Record<string, string> }[];
    };
    const line = JSON.parse(first.body.stringValue);
    assert.equal(line.event.class, "http");
    const attr = Object.fromEntries(
      first.attributes.map((a) => [a.key, Object.values(a.value)[0]]),
    );
    assert.equal(attr["event.name"], "http.request");
    assert.equal(attr["clawcage.seq"], String(line.seq));
    assert.equal(first.severityText, "WARN", "httpEvent(0) is a denial");
    assert.equal(first.timeUnixNano, `${BigInt(Date.parse(line.time)) * 1_000_000n}`);
  } finally {
    Deno.env.delete("CLAWCAGE_TEST_OTLP_TOKEN");
    await recv.close();
    cleanup(t);
  }
});

Deno.test("audit export: a failing receiver is retried with backoff; failure and recovery are recorded", async () => {
  const t = tempLog();
  const recv = otlpReceiver(3, 503);
  try {
    const s = await openSession(t, `    otlp:\n      url: ${recv.url}\n`);
    for (let i = 0; i < 20; i++) s.record(httpEvent(i));
    await until(() => httpBodies(recv).length >= 20, 10_000, "delivery after retries");
    await s.close();
    assert.equal(recv.requests >= 4, true);
    assertSameRecords(bodies(recv), localRecords(t));
    const notices = localRecords(t).map((r) => r.event).filter((e): e is AuditNotice =>
      e.class === "audit" && e.activity === "export"
    );
    assert.match(notices[0].message, /export failing \(will retry\): HTTP 503/);
    assert.match(notices[1].message, /export recovered after 3 failed attempts/);
    assert.equal(verifyLog(t.dir, t.keyFile).broken, null);
  } finally {
    await recv.close();
    cleanup(t);
  }
});

Deno.test("audit export: a dead collector never blocks or drops local records; export drops are counted and recorded", async () => {
  const t = tempLog();
  // A port with nothing listening (bound, then closed).
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  try {
    const s = await openSession(
      t,
      `    queue_max: 50\n    syslog:\n      target: tcp://127.0.0.1:${port}\n`,
    );
    const start = performance.now();
    for (let i = 0; i < 2000; i++) assert.ok(s.record(httpEvent(i)));
    const ms = performance.now() - start;
    assert.ok(ms < 1000, `recording took ${ms} ms`);
    await s.flush();
    await new Promise((r) => setTimeout(r, 1200)); // one notice interval
    const stats = s.exportStats()[0];
    assert.equal(stats.failing, true);
    assert.ok(stats.dropped >= 1950, `dropped ${stats.dropped}`);
    await s.close(300);
    const local = localRecords(t);
    assert.equal(local.filter((r) => r.event.class === "http").length, 2000, "local log complete");
    const notices = local.map((r) => r.event).filter((e): e is AuditNotice =>
      e.class === "audit" && e.activity === "export"
    );
    assert.match(notices[0].message, /export failing \(will retry\): .*refused/i);
    const dropped = notices.reduce((n, e) => n + (e.dropped ?? 0), 0);
    assert.ok(dropped >= 1950, `notices account for ${dropped} dropped records`);
    assert.ok(notices.some((e) => /not exported before shutdown/.test(e.message)));
    assert.equal(verifyLog(t.dir, t.keyFile).broken, null);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit doctor: log and key directories, kernel denials, export reachability", async () => {
  const t = tempLog();
  const recv = otlpReceiver();
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = l.addr.port;
  l.close();
  const policy = join(t.root, "p.yaml");
  Deno.writeTextFileSync(
    policy,
    `version: 1\naudit:\n  log_dir: ${t.dir}\n  key_dir: ${t.keyDir}\n  export:\n` +
      `    syslog:\n      target: tcp://127.0.0.1:${deadPort}\n    otlp:\n      url: ${recv.url}\n`,
  );
  try {
    const r = await cli(["doctor", "--json", "--policy", policy]);
    const checks = JSON.parse(r.stdout).checks as {
      name: string;
      status: string;
      detail: string;
    }[];
    const by = (n: string) => checks.find((c) => c.name === n)!;
    assert.equal(by("audit log").status, "ok");
    assert.match(by("audit log").detail, /will be created/);
    assert.equal(by("audit key").status, "ok");
    assert.ok(by("landlock denials"), "denials are reported either way");
    assert.equal(by("audit syslog").status, "warn");
    assert.match(by("audit syslog").detail, /not reachable/);
    assert.equal(by("audit otlp").status, "ok");
    assert.equal(logRecords(recv).length, 0, "the probe stores nothing");
    // A log directory that cannot be written is a missing item (doctor exits 1).
    if (Deno.uid() === 0) {
      Deno.mkdirSync(t.dir, { recursive: true });
      const mount = (args: string[]) => new Deno.Command("mount", { args }).outputSync();
      assert.ok(mount(["--bind", t.dir, t.dir]).success);
      try {
        assert.ok(mount(["-o", "remount,bind,ro", t.dir]).success);
        const r2 = await cli(["doctor", "--json", "--policy", policy]);
        assert.equal(r2.code, 1);
        const c =
          (JSON.parse(r2.stdout).checks as { name: string; status: string; detail: string }[])
            .find((x) => x.name === "audit log")!;
        assert.equal(c.status, "missing");
        assert.match(c.detail, /Read-only file system/);
      } finally {
        new Deno.Command("umount", { args: ["-l", t.dir] }).outputSync();
      }
    }
  } finally {
    await recv.close();
    cleanup(t);
  }
});
