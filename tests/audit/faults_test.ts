// Faults: a full disk (a small tmpfs mounted here), kill -9 of the supervisor, clock jumps, and
// `audit tail -f` across rotation. No silent loss: every record acknowledged as durable is in
// the log, the log verifies (a torn last line is reported as such), and a supervisor that cannot
// record stops the sandbox and says why.

import assert from "node:assert/strict";
import { join } from "node:path";
import type { AuditRecord } from "../../core/audit/events.ts";
import { readRecords } from "../../core/audit/read.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import { AuditFailedError, AuditLog } from "../../core/audit/writer.ts";
import { selfCommand } from "../../core/self.ts";
import { kernelAuditOn, setKernelAudit } from "../../core/audit/kernel_audit_lease.ts";
import { cli } from "../helpers/cli.ts";
import { isRoot, landlockAbi, sandboxSkipReason } from "../helpers/host.ts";
import { cleanup, httpEvent, kernelAuditProblem, tempLog } from "./helpers.ts";

const run = (args: string[]) => new Deno.Command(args[0], { args: args.slice(1) }).outputSync();

/** Mounts a tmpfs of `size` at a new temp dir; null (with the reason logged) when not root. */
function smallTmpfs(size: string, base?: string): string {
  const dir = Deno.makeTempDirSync({ prefix: "clawcage-audit-tmpfs-", dir: base });
  const r = run(["mount", "-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir]);
  assert.ok(r.success, new TextDecoder().decode(r.stderr));
  return dir;
}

function unmount(dir: string): void {
  run(["umount", "-l", dir]);
  Deno.removeSync(dir, { recursive: true });
}

/** Fills the file system that holds `dir` until ENOSPC. */
function fill(dir: string): void {
  const f = Deno.openSync(join(dir, "filler"), { write: true, create: true });
  const chunk = new Uint8Array(4096);
  try {
    for (;;) f.writeSync(chunk);
  } catch (e) {
    assert.match((e as Error).message, /No space left/);
  } finally {
    f.close();
  }
}

function records(dir: string): AuditRecord[] {
  return [...readRecords(dir)].map((r) => r.record);
}

Deno.test({
  name: "audit faults: a full disk fails the log loudly; every flushed record is there" +
    (isRoot ? "" : " (ignored: mounting a tmpfs needs root)"),
  ignore: !isRoot,
  async fn() {
    const fs = smallTmpfs("64k");
    const keyDir = Deno.makeTempDirSync({ prefix: "clawcage-audit-key-" });
    try {
      let failures = 0;
      const log = await AuditLog.open(join(fs, "log"), {
        keyDir,
        fsync: { intervalMs: 1 },
        onFailure: () => failures++,
      });
      const durable: number[] = [];
      let error: unknown = null;
      for (let i = 0; i < 10_000 && error === null; i++) {
        try {
          const seq = log.record(httpEvent(i));
          if (i % 10 === 9) {
            await log.flush();
            durable.push(seq);
          }
        } catch (e) {
          error = e;
        }
      }
      assert.ok(error instanceof AuditFailedError, `got ${error}`);
      assert.match((error as Error).message, /cannot write \(No space left on device/);
      assert.equal(log.healthy, false);
      assert.equal(failures, 1, "onFailure is called once");
      assert.throws(() => log.record(httpEvent(0)), AuditFailedError);
      await assert.rejects(log.close(), AuditFailedError);
      // Every record flush() acknowledged is on disk and the chain up to the end verifies (the
      // last line may be torn by the short write, which verify reports as such).
      const onDisk = new Set(records(join(fs, "log")).map((r) => r.seq));
      for (const seq of durable) assert.ok(onDisk.has(seq), `acknowledged seq ${seq} missing`);
      const v = verifyLog(join(fs, "log"), join(keyDir, "audit.key"));
      if (v.broken) assert.equal(v.broken.kind, "torn", JSON.stringify(v.broken));
      assert.ok(durable.length > 10, `only ${durable.length} flushes before the disk filled`);
    } finally {
      unmount(fs);
      Deno.removeSync(keyDir, { recursive: true });
    }
  },
});

async function kernelAuditUsable(): Promise<string | null> {
  if (sandboxSkipReason()) return sandboxSkipReason();
  if (landlockAbi < 7) return "Landlock ABI 7 (denial records) missing";
  return await kernelAuditProblem();
}
const noDenials = await kernelAuditUsable();

/** Puts the host's kernel audit setting back should the test fail half-way. */
async function restoreKernelAudit<T>(fn: () => Promise<T>): Promise<T> {
  const was = await kernelAuditOn();
  try {
    return await fn();
  } finally {
    if (!was && await kernelAuditOn()) await setKernelAudit(false);
  }
}

function policyFor(root: string, log: string, key: string): string {
  const p = join(root, "policy.yaml");
  Deno.writeTextFileSync(
    p,
    `version: 1
filesystem_policy:
  include_workdir: false
  read_only: [/usr, /bin, /lib, /lib64, /etc]
  read_write: [/tmp, /dev/null]
process:
  run_as_user: nobody
audit:
  log_dir: ${log}
  key_dir: ${key}
  kernel_denials: enable
  fsync: always
`,
  );
  return p;
}

/** A world-readable file the policy does not grant (not under /tmp: private in the sandbox). */
function deniedFile(): { dir: string; file: string } {
  Deno.mkdirSync("/srv", { recursive: true });
  const dir = Deno.makeTempDirSync({ prefix: "clawcage-denied-", dir: "/srv" });
  Deno.chmodSync(dir, 0o755);
  const file = join(dir, "secret");
  Deno.writeTextFileSync(file, "s\n");
  Deno.chmodSync(file, 0o644);
  return { dir, file };
}

/** The agent: prints ready, then makes Landlock denials (each one a record) until killed. */
const MARK = "clawcage-denial-loop";
const denialsAgent = (file: string) =>
  `echo ready; while :; do cat ${file} 2>/dev/null; : ${MARK}; done`;

async function startRun(
  policy: string,
  file: string,
  extra: string[] = [],
): Promise<Deno.ChildProcess> {
  const argv = selfCommand(
    ["run", "-q", "-p", policy, "-w", "/tmp", ...extra, "--", "/bin/sh", "-c", denialsAgent(file)],
  );
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.equal(new TextDecoder().decode(value).trim(), "ready");
  reader.releaseLock();
  return child;
}

/** Waits (up to 10 s, for loaded machines) until a denial is on disk in `log`. */
async function firstDenial(log: string): Promise<void> {
  const until = Date.now() + 10_000;
  const seen = () => {
    try {
      return records(log).some((r) => r.event.class === "file");
    } catch {
      return false;
    }
  };
  while (!seen() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  assert.ok(seen(), "denials are recorded");
}

function agentAlive(): boolean {
  return run(["pgrep", "-f", MARK]).success;
}

for (const mode of ["namespaces", "rootless"]) {
  Deno.test({
    name: `audit faults: the disk fills during a run (${mode}): the supervisor stops the sandbox ` +
      `and says why${noDenials ? ` (ignored: ${noDenials})` : ""}`,
    ignore: noDenials !== null,
    async fn() {
      // Rootless, /tmp is the host's and the policy grants it: the audit directories go elsewhere.
      const base = mode === "rootless" ? "/var/tmp" : undefined;
      const fs = smallTmpfs("256k", base);
      const root = Deno.makeTempDirSync({ prefix: "clawcage-audit-fault-", dir: base });
      const denied = deniedFile();
      try {
        const log = join(fs, "log");
        const child = await startRun(
          policyFor(root, log, join(root, "key")),
          denied.file,
          mode === "rootless" ? ["--rootless"] : [],
        );
        // Denials are being recorded (wait for the first on disk); now the disk fills up.
        await firstDenial(log);
        fill(fs);
        const started = Date.now();
        const out = await child.output();
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 125, stderr);
        assert.ok(Date.now() - started < 10_000, "stopped promptly");
        assert.match(
          stderr,
          /clawcage: audit trail failed; the sandbox was stopped \(fail closed\): .*No space left on device/,
        );
        assert.equal(agentAlive(), false, "the agent was stopped");
        const v = verifyLog(log, join(root, "key", "audit.key"));
        if (v.broken) assert.equal(v.broken.kind, "torn", JSON.stringify(v.broken));
      } finally {
        unmount(fs);
        Deno.removeSync(root, { recursive: true });
        Deno.removeSync(denied.dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "audit faults: kill -9 of the supervisor while it records: the agent dies, the log " +
    "verifies up to the cut, the next run resumes the chain" +
    (noDenials ? ` (ignored: ${noDenials})` : ""),
  ignore: noDenials !== null,
  fn: () => restoreKernelAudit(killNine),
});

async function killNine(): Promise<void> {
  {
    const wasOn = await kernelAuditOn();
    const root = Deno.makeTempDirSync({ prefix: "clawcage-audit-fault-" });
    const denied = deniedFile();
    const log = join(root, "log"), key = join(root, "key");
    try {
      const policy = policyFor(root, log, key);
      const child = await startRun(policy, denied.file);
      await firstDenial(log);
      await new Promise((r) => setTimeout(r, 200)); // recording in full swing
      child.kill("SIGKILL");
      await child.output();
      const deadline = Date.now() + 5000;
      while (agentAlive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(agentAlive(), false, "the agent outlived its supervisor");
      const before = verifyLog(log, join(key, "audit.key"));
      if (before.broken) assert.equal(before.broken.kind, "torn", JSON.stringify(before.broken));
      const rs = records(log);
      const denials = rs.map((r) => r.event).filter((e) => e.class === "file");
      assert.ok(denials.length > 0, "denials were recorded before the kill");
      // Each with the sandbox's identity, the path, the rights and the program.
      const load = rs.map((r) => r.event).find((e) => e.class === "config");
      const sandbox = load?.class === "config" ? load.sandbox : undefined;
      assert.match(sandbox ?? "", /^sb-/);
      for (const d of denials) {
        assert.equal(d.sandbox, sandbox);
        assert.equal(d.decision, "deny");
        assert.equal(d.file.path, denied.file);
        assert.deepEqual(d.file.access, ["fs.read_file"]);
        assert.equal(d.actor?.exe, "/usr/bin/cat");
      }
      // The next run takes over: its first segment links to the last complete record.
      const r = await cli(["run", "-q", "-p", policy, "-w", "/tmp", "--", "/bin/true"]);
      assert.equal(r.code, 0, r.stderr);
      const after = verifyLog(log, join(key, "audit.key"));
      assert.equal(after.broken, null, JSON.stringify(after.broken));
      assert.equal(after.unsealed_tail, 0);
      // The killed run had turned kernel auditing on; the next run adopted it and, ending as
      // the last user, turned it off again.
      if (!wasOn) assert.equal(await kernelAuditOn(), false, "kernel auditing left on");
    } finally {
      Deno.removeSync(root, { recursive: true });
      Deno.removeSync(denied.dir, { recursive: true });
    }
  }
}

Deno.test("audit faults: clock jumps back and forward: order is seq, nothing lost, no early rotation", async () => {
  const t = tempLog();
  try {
    let now = Date.parse("2026-06-01T12:00:00Z");
    const log = await AuditLog.open(t.dir, {
      keyDir: t.keyDir,
      clock: () => now,
      rotateMs: 3600_000,
    });
    const seqs: number[] = [];
    for (let i = 0; i < 300; i++) {
      if (i === 100) now -= 3 * 3600_000; // back three hours
      if (i === 200) now += 2 * 86400_000; // forward two days
      seqs.push(log.record(httpEvent(i)));
      now += 10;
    }
    await log.close();
    const v = verifyLog(t.dir, t.keyFile);
    assert.equal(v.broken, null, JSON.stringify(v.broken));
    const recs = records(t.dir).filter((r) => r.event.class === "http");
    assert.deepEqual(recs.map((r) => r.seq), seqs);
    assert.equal(recs[100].time, "2026-06-01T09:00:01.000Z");
    assert.ok(Date.parse(recs[99].time) > Date.parse(recs[100].time), "the jump back is kept");
    assert.ok(Date.parse(recs[200].time) - Date.parse(recs[199].time) > 86400_000);
    // Rotation uses a monotonic clock: a wall-clock jump of days does not rotate.
    assert.equal(
      Deno.readDirSync(t.dir).filter((e) => e.name.endsWith(".jsonl")).toArray().length,
      1,
    );
  } finally {
    cleanup(t);
  }
});

Deno.test("audit faults: tail -f follows new records and across rotation, whole lines only", async () => {
  const t = tempLog();
  const log = await AuditLog.open(t.dir, { keyDir: t.keyDir, rotateBytes: 8192 });
  // Everything already there, then what follows: whenever tail starts reading, each record
  // must be printed exactly once.
  const argv = selfCommand(["audit", "tail", "-f", "-n", "1000000", "--json", t.dir]);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const pump = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      lines.push(...parts);
    }
  })();
  try {
    await new Promise((r) => setTimeout(r, 300)); // tail starts meanwhile, or not yet
    for (let i = 0; i < 200; i++) {
      log.record(httpEvent(i));
      if (i % 20 === 19) {
        await log.flush();
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await log.flush();
    const end = Date.now() + 10_000;
    while (lines.length < 200 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 600)); // time for any duplicate to show up
    const recs = lines.map((l) => JSON.parse(l) as AuditRecord); // every line parses: no partials
    const urls = recs.map((r) => r.event.class === "http" ? r.event.http.url : null);
    assert.deepEqual(
      urls,
      Array.from({ length: 200 }, (_, i) => `https://api.example.com/v1/items/${i}`),
    );
    const files = Deno.readDirSync(t.dir).filter((e) => e.name.endsWith(".jsonl")).toArray();
    assert.ok(files.length >= 5, `rotated into ${files.length} files`);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await pump.catch(() => {});
    await child.stderr.cancel();
    await log.close();
    cleanup(t);
  }
});
