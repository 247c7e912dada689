// `clawcage run` writes its audit trail: what it records, and that it fails closed (refuses to
// start, or stops the sandbox) when the log cannot be written. Real supervisor, real sandbox.

import assert from "node:assert/strict";
import { join } from "node:path";
import type { AuditRecord, ProcessActivity } from "../../core/audit/events.ts";
import { logsAt, readRecords } from "../../core/audit/read.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import { AuditLog } from "../../core/audit/writer.ts";
import { cli } from "../helpers/cli.ts";
import { selfCommand } from "../../core/self.ts";
import { readLines } from "./helpers.ts";
import { sandboxSkipReason } from "../helpers/host.ts";

const skip = sandboxSkipReason();
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name: `audit run: ${name}${skip ? ` (skipped: ${skip})` : ""}`,
    ignore: skip !== null,
    fn,
  });

interface Env {
  root: string;
  log: string;
  key: string;
  policy: string;
}

/** A temp dir with a policy whose audit section points into it (log and key directories). */
function setup(extraAudit = "", fsExtra = "", base?: string): Env {
  const root = Deno.makeTempDirSync({ prefix: "clawcage-audit-run-", dir: base });
  const log = join(root, "log");
  const key = join(root, "key");
  const policy = join(root, "policy.yaml");
  Deno.writeTextFileSync(
    policy,
    `version: 1
filesystem_policy:
  include_workdir: false
  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc${fsExtra}]
  read_write: [/tmp, /dev/null]
process:
  run_as_user: nobody
audit:
  log_dir: ${log}
  key_dir: ${key}
${extraAudit}`,
  );
  return { root, log, key, policy };
}

function records(dir: string): AuditRecord[] {
  return [...readRecords(dir)].map((r) => r.record);
}

function processEvents(rs: AuditRecord[], role: string): ProcessActivity[] {
  return rs.map((r) => r.event).filter((e): e is ProcessActivity =>
    e.class === "process" && e.process.role === role
  );
}

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Buffer.from(d).toString("hex");
}

const run = (e: Env, script: string, extra: string[] = []) =>
  cli(["run", "-p", e.policy, "-w", "/tmp", ...extra, "--", "/bin/sh", "-c", script]);

test("records the policy load, sandbox and agent start and exit, and shutdown", async () => {
  const e = setup();
  try {
    // The agent lives long enough for the supervisor to see its host pid (an agent that exits
    // within milliseconds is recorded with its pid inside the sandbox only).
    const r = await run(e, "echo hello; sleep 0.3; exit 7");
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, "hello\n");
    assert.match(r.stderr, /clawcage: audit: .*\/log \(sandbox sb-[0-9a-f]{12}\)/);
    const rs = records(e.log);
    const sandbox = /sandbox (sb-[0-9a-f]+)/.exec(r.stderr)![1];
    const load = rs.find((x) => x.event.class === "config")!.event;
    assert.deepEqual(load, {
      class: "config",
      activity: "load",
      config: { name: e.policy, sha256: await sha256(e.policy) },
      sandbox,
    });
    const [sbStart, sbEnd] = processEvents(rs, "sandbox");
    assert.equal(sbStart.activity, "launch");
    assert.ok(sbStart.sandbox_info?.layers.some((l) => l.startsWith("landlock(")));
    assert.equal(sbStart.sandbox_info?.user, "nobody(65534:65534)");
    assert.equal(sbEnd.activity, "terminate");
    assert.equal(sbEnd.process.exit_code, 7);
    const [agentStart, agentEnd] = processEvents(rs, "agent");
    assert.equal(agentStart.activity, "launch");
    assert.deepEqual(agentStart.process.argv, ["/bin/sh", "-c", "echo hello; sleep 0.3; exit 7"]);
    assert.equal(agentStart.process.uid, 65534);
    assert.ok(agentStart.process.pid! > 1, "host pid");
    assert.ok(agentStart.process.ns_pid! >= 1, "pid inside the sandbox");
    assert.equal(agentEnd.process.exit_code, 7);
    assert.equal(agentEnd.process.pid, agentStart.process.pid);
    const [sup] = processEvents(rs, "supervisor");
    assert.equal(sup.activity, "terminate");
    assert.equal(sup.process.exit_code, 7);
    // Every event of the run carries the sandbox id; the log verifies with the key.
    for (const x of rs) if (x.event.class !== "audit") assert.equal(x.event.sandbox, sandbox);
    const v = verifyLog(e.log, join(e.key, "audit.key"));
    assert.equal(v.broken, null);
    assert.equal(v.unsealed_tail, 0);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("the proxy's records carry the run's sandbox id, the caller's pid and exe hash", async () => {
  const curl = ["/usr/bin/curl", "/bin/curl"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!curl) {
    console.log("  (curl not installed: proxy record check skipped)");
    return;
  }
  const e = setup();
  try {
    // Denied by the policy (no network entries) before any DNS lookup; nothing leaves the host.
    const r = await run(e, `${curl} -s -o /dev/null -w '%{http_code}' http://denied.invalid/`);
    assert.equal(r.stdout, "403", r.stderr);
    const rs = records(e.log).map((x) => x.event);
    const sandbox = rs.find((x) => x.class === "config")!.sandbox;
    const http = rs.filter((x) => x.class === "http");
    assert.ok(http.length >= 1, JSON.stringify(rs.map((x) => x.class)));
    for (const x of rs) if (x.class !== "audit") assert.equal(x.sandbox, sandbox, x.class);
    const denial = http[0];
    assert.equal(denial.decision, "deny");
    assert.equal(denial.actor?.exe, curl);
    assert.match(denial.actor?.sha256 ?? "", /^[0-9a-f]{64}$/);
    assert.equal(denial.actor?.sha256, await sha256(curl));
    // The bridge sees pids of the sandbox's PID namespace: recorded as ns_pid, not as a host pid.
    assert.ok(denial.actor?.ns_pid! > 1, JSON.stringify(denial.actor));
    assert.equal(denial.actor?.pid, undefined);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("an agent killed by a signal: the record names the signal", async () => {
  const e = setup();
  try {
    const r = await run(e, "kill -SEGV $$");
    assert.equal(r.code, 139, r.stderr);
    const [, end] = processEvents(records(e.log), "agent");
    assert.equal(end.process.signal, "SIGSEGV");
    assert.equal(end.process.exit_code, undefined);
    // The agent itself exiting 139 is told apart from a SIGSEGV.
    const r2 = await run(e, "exit 139");
    assert.equal(r2.code, 139);
    const ends = processEvents(records(e.log), "agent").filter((x) => x.activity === "terminate");
    assert.equal(ends.at(-1)!.process.exit_code, 139);
    assert.equal(ends.at(-1)!.process.signal, undefined);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("--no-audit writes nothing; --audit-dir overrides the policy", async () => {
  const e = setup();
  try {
    const r = await run(e, "true", ["--no-audit"]);
    assert.equal(r.code, 0, r.stderr);
    assert.throws(() => Deno.statSync(e.log), Deno.errors.NotFound);
    const other = join(e.root, "other");
    const r2 = await run(e, "true", ["-q", "--audit-dir", other]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(records(other).some((x) => x.event.class === "process"));
    assert.throws(() => Deno.statSync(e.log), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("a read-only log directory: the agent does not start (one line, exit 125)", async () => {
  const e = setup();
  Deno.mkdirSync(e.log);
  // A read-only bind mount: even root cannot write there.
  const mount = (args: string[]) => new Deno.Command("mount", { args }).outputSync();
  assert.ok(mount(["--bind", e.log, e.log]).success);
  try {
    assert.ok(mount(["-o", "remount,bind,ro", e.log]).success);
    const r = await cli([
      "run",
      "-q",
      "-p",
      e.policy,
      "-w",
      "/tmp",
      "--",
      "/bin/sh",
      "-c",
      "echo ran",
    ]);
    assert.equal(r.code, 125);
    // (The sandbox's /tmp is private: its stdout, not a marker file, shows it did not run.)
    assert.equal(r.stdout, "");
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(
      r.stderr,
      /^clawcage: cannot .*Read-only file system.*refusing to start the agent/,
    );
  } finally {
    new Deno.Command("umount", { args: ["-l", e.log] }).outputSync();
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("the log held by another writer: the agent does not start (exit 125)", async () => {
  const e = setup();
  const other = await AuditLog.open(e.log, { keyDir: e.key });
  try {
    // (The sandbox's /tmp is private: its stdout, not a marker file, shows it did not run.)
    const r = await run(e, "echo ran", ["-q"]);
    assert.equal(r.code, 125);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^clawcage: audit log .* is in use by another writer/);
    assert.match(r.stderr, /refusing to start the agent/);
    // It says how to run several at once.
    assert.match(
      r.stderr,
      /one writer per log: to run several agents at once, give each clawcage run its own --audit-dir DIR, or run them under clawcage service, which gives each agent its own log/,
    );
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  } finally {
    await other.close();
    Deno.removeSync(e.root, { recursive: true });
  }
});

/**
 * A `clawcage run` (with `options`) whose agent has said it started, so its writer holds its log;
 * the agent waits 3 s for what the test does meanwhile.
 */
async function startedRun(options: string[]): Promise<Deno.ChildProcess> {
  const argv = selfCommand(
    ["run", ...options, "-w", "/tmp", "--", "/bin/sh", "-c", "echo started; sleep 3"],
  );
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  if (new TextDecoder().decode(value) !== "started\n") {
    child.kill("SIGKILL");
    const out = await child.output();
    assert.fail(`the first run did not start: ${new TextDecoder().decode(out.stderr)}`);
  }
  return child;
}

test("two runs at once on one log: the second is refused and told how to run several", async () => {
  const e = setup();
  const first = await startedRun(["-q", "-p", e.policy]);
  try {
    const second = await run(e, "echo ran", ["-q"]);
    assert.equal(second.code, 125, second.stderr);
    assert.equal(second.stdout, "", "the second agent did not start");
    assert.match(second.stderr, /^clawcage: audit log .* is in use by another writer/);
    assert.match(
      second.stderr,
      /give each clawcage run its own --audit-dir DIR, or run them under clawcage service/,
    );
  } finally {
    const done = await first.output();
    assert.equal(done.code, 0, new TextDecoder().decode(done.stderr));
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("two runs at once on the default log: the second writes a log of its own below it", async () => {
  // No audit section: the default log and key directories, as a plain `clawcage run` uses them.
  const policy = Deno.makeTempFileSync({ suffix: ".yaml" });
  Deno.writeTextFileSync(
    policy,
    "version: 1\nfilesystem_policy:\n  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc]\n" +
      "process:\n  run_as_user: nobody\n",
  );
  const first = await startedRun(["-p", policy]);
  const auditDir = (stderr: string) =>
    /clawcage: audit: (\S+) \(sandbox (sb-[0-9a-f]+)\)/.exec(stderr);
  try {
    const second = await cli([
      "run",
      "-p",
      policy,
      "-w",
      "/tmp",
      "--",
      "/bin/sh",
      "-c",
      "echo ran",
    ]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, "ran\n");
    const [, dir, sandbox] = auditDir(second.stderr) ?? [];
    assert.match(dir ?? "", /\/_run-\d+$/, second.stderr);
    // Its log holds its run, and the readers of the default directory see it.
    const own = records(dir).filter((r) => "sandbox" in r.event && r.event.sandbox === sandbox);
    assert.ok(own.some((r) => r.event.class === "process"), JSON.stringify(own.slice(0, 2)));
    const root = dir.replace(/\/_run-\d+$/, "");
    assert.ok(logsAt(root).includes(dir), `${dir} not among ${logsAt(root).join(", ")}`);
  } finally {
    const done = await first.output();
    assert.equal(done.code, 0, new TextDecoder().decode(done.stderr));
    Deno.removeSync(policy);
  }
});

test("the sandbox cannot see or touch the log and key directories, even under a grant", async () => {
  // The policy grants the whole temp dir (which holds log/ and key/) read-only.
  const root = Deno.makeTempDirSync({ prefix: "clawcage-audit-run-", dir: "/srv" });
  Deno.chmodSync(root, 0o755);
  const e = setup("", `, ${root}`);
  // The audit directories go under the granted dir, and the agent runs as (capability-less)
  // root, the owner of both: only hiding them keeps it out, not file modes.
  const log = join(root, "log"), key = join(root, "key");
  Deno.writeTextFileSync(
    e.policy,
    Deno.readTextFileSync(e.policy).replace(e.log, log).replace(e.key, key)
      .replace("run_as_user: nobody", "run_as_user: root"),
  );
  try {
    const script = [
      `grep -c " ${log} .*tmpfs" /proc/self/mountinfo`,
      `grep -c " ${key} .*tmpfs" /proc/self/mountinfo`,
      `ls -A ${log} 2>&1 || true`,
      `cat ${log}/audit-000001.jsonl 2>&1 || true`,
      `cat ${key}/audit.key 2>&1 || true`,
      `echo forged >> ${log}/audit-000001.jsonl 2>&1 || true`,
      `rm -f ${log}/audit-000001.jsonl 2>&1 || true`,
    ].join("; ");
    const r = await run(e, script, ["-q"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "1", "the log dir is covered by a tmpfs inside the sandbox");
    assert.equal(lines[1], "1", "the key dir is covered by a tmpfs inside the sandbox");
    const keyHex = Deno.readTextFileSync(join(key, "audit.key")).trim();
    assert.ok(!r.stdout.includes(keyHex), "the key leaked");
    assert.ok(!r.stdout.includes('"seq"'), "a log record leaked");
    assert.match(r.stdout, /Permission denied|Read-only|No such file/);
    const v = verifyLog(log, join(key, "audit.key"));
    assert.equal(v.broken, null, JSON.stringify(v.broken));
    // (The agent's command line, recorded in the log, mentions "forged"; no line is that text.)
    assert.ok(!readLines(join(log, "audit-000001.jsonl")).includes("forged"));
  } finally {
    Deno.removeSync(root, { recursive: true });
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("rootless: a granted workdir that contains the log directory is refused", async () => {
  // Not under /tmp, which the policy grants.
  const e = setup("", "", "/var/tmp");
  Deno.chmodSync(e.root, 0o755);
  Deno.writeTextFileSync(
    e.policy,
    Deno.readTextFileSync(e.policy).replace("include_workdir: false", "include_workdir: true"),
  );
  try {
    const inside = join(e.root, "inside");
    const r = await cli([
      "run",
      "-q",
      "--rootless",
      "-p",
      e.policy,
      "-w",
      e.root,
      "--audit-dir",
      inside,
      "--",
      "/bin/true",
    ]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /audit log directory .*inside is inside .*rootless mode cannot hide/);
    assert.throws(() => Deno.statSync(inside), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("a policy that grants a path inside the log directory is refused", async () => {
  const e = setup();
  Deno.mkdirSync(join(e.log, "sub"), { recursive: true });
  Deno.writeTextFileSync(
    e.policy,
    Deno.readTextFileSync(e.policy).replace("[/tmp, /dev/null]", `[/tmp, /dev/null, ${e.log}/sub]`),
  );
  try {
    const r = await run(e, "true", ["-q"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /granted .*\/log\/sub, inside the audit log directory/);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("rootless: the same records, with host pids", async () => {
  const e = setup("", "", "/var/tmp");
  try {
    const r = await run(e, "sleep 0.3; exit 3", ["-q", "--rootless"]);
    assert.equal(r.code, 3, r.stderr);
    const rs = records(e.log);
    const [start, end] = processEvents(rs, "agent");
    assert.ok(start.process.pid! > 1);
    assert.equal(start.process.ns_pid, undefined, "no PID namespace");
    assert.equal(end.process.exit_code, 3);
    const [sb] = processEvents(rs, "sandbox");
    assert.ok(sb.sandbox_info?.layers.includes("namespaces(off: rootless)"));
    assert.equal(verifyLog(e.log, join(e.key, "audit.key")).broken, null);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("a grant that reaches the log directory through a symlink is seen through", async () => {
  const e = setup("", "", "/var/tmp");
  Deno.mkdirSync(e.log, { recursive: true });
  const link = join(e.root, "innocent");
  Deno.symlinkSync(e.log, link);
  Deno.writeTextFileSync(
    e.policy,
    Deno.readTextFileSync(e.policy).replace("[/tmp, /dev/null]", `[/tmp, /dev/null, ${link}]`),
  );
  try {
    const r = await run(e, "true", ["-q"]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /granted .*\/log, inside the audit log directory/);
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});

test("execs inside the sandbox are recorded; clawcage's own and the host's are not", async () => {
  const e = setup();
  try {
    // Something outside the sandbox execs programs during the run too.
    let outside = true;
    const noise = (async () => {
      while (outside) {
        await new Deno.Command("/bin/true").output();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const r = await run(e, "/bin/sleep 0.2; /bin/sh -c '/bin/sleep 0.1'; exit 0", ["-q"]);
    outside = false;
    await noise;
    assert.equal(r.code, 0, r.stderr);
    const execs = records(e.log).map((x) => x.event).filter((x): x is ProcessActivity =>
      x.class === "process" && x.activity === "exec"
    );
    const exes = execs.map((x) => x.process.exe);
    // sh (the agent), sleep, sh, sleep: long-lived enough for /proc to name them.
    const sh = Deno.realPathSync("/bin/sh"), sleep = Deno.realPathSync("/bin/sleep");
    assert.deepEqual(exes, [sh, sleep, sh, sleep]);
    assert.deepEqual(execs[1].process.argv, ["/bin/sleep", "0.2"]);
    for (const x of execs) {
      assert.ok(x.process.pid! > 1 && x.process.ns_pid! >= 1, JSON.stringify(x));
      assert.equal(x.process.uid, 65534);
    }
  } finally {
    Deno.removeSync(e.root, { recursive: true });
  }
});
