// `clawcage run` as a user runs it: exit codes, signals, stdio, orphans, bad input.

import assert from "node:assert/strict";
import { selfCommand } from "../../core/self.ts";
import { cli } from "../helpers/cli.ts";
import { sandboxSkipReason } from "../helpers/host.ts";

const skip = sandboxSkipReason();
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name: `run: ${name}${skip ? ` (skipped: ${skip})` : ""}`,
    ignore: skip !== null,
    fn,
  });

const sh = (
  script: string,
  extra: string[] = [],
) => ["run", "-q", "-w", "/tmp", ...extra, "--", "/bin/sh", "-c", script];

test("passes the agent's exit code through", async () => {
  const r = await cli(sh("exit 7"));
  assert.equal(r.code, 7, r.stderr);
});

test("an agent killed by a signal exits 128+N", async () => {
  const r = await cli(sh("kill -TERM $$"));
  assert.equal(r.code, 143, r.stderr);
});

test("stdout, stderr and stdin are the agent's", async () => {
  const r = await cli(["run", "-q", "-w", "/tmp", "--", "/bin/sh", "-c", "cat; echo err >&2"], {
    stdin: "hello\n",
  });
  assert.equal(r.stdout, "hello\n");
  assert.equal(r.stderr, "err\n");
  assert.equal(r.code, 0);
});

test("prints which layers are active unless -q", async () => {
  const r = await cli(["run", "-w", "/tmp", "--", "/bin/true"]);
  assert.match(
    r.stderr,
    /^clawcage: sandbox: namespaces\(mount,pid,net,ipc,uts,cgroup\) landlock\(abi \d+/m,
  );
  assert.match(r.stderr, /network\(egress proxy via 127\.0\.0\.1:3128\)/);
  assert.match(r.stderr, /user nobody\(65534:65534\)/);
});

test("the agent runs as nobody with no capabilities and no_new_privs, as PID > 1", async () => {
  const r = await cli(
    sh("id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; echo $$"),
  );
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines[0], "65534");
  assert.match(r.stdout, /CapEff:\s+0000000000000000/);
  assert.match(r.stdout, /CapBnd:\s+0000000000000000/);
  assert.match(r.stdout, /NoNewPrivs:\s+1/);
  assert.match(r.stdout, /Seccomp:\s+2/);
  assert.ok(Number(lines.at(-1)) > 1);
});

test("SIGTERM to clawcage reaches the agent", async () => {
  const argv = selfCommand(sh("trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"));
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.equal(new TextDecoder().decode(value).trim(), "ready");
  reader.releaseLock();
  child.kill("SIGTERM");
  const status = await child.output();
  assert.equal(status.code, 42);
});

test("zombies are reaped by the sandbox's init", async () => {
  // The orphaned grandchild exits and must not stay a zombie under PID 1.
  const r = await cli(
    sh("(sh -c 'exit 0' &); sleep 0.3; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l"),
  );
  assert.equal(r.stdout.trim(), "0", r.stderr);
});

test("killing clawcage with SIGKILL leaves no agent processes behind", async () => {
  const marker = `clawcage-orphan-${crypto.randomUUID().slice(0, 8)}`;
  const agentSeconds = 3000 + Math.floor(Math.random() * 999);
  const argv = selfCommand([
    "run",
    "-q",
    "-w",
    "/tmp",
    "--",
    "/bin/sh",
    "-c",
    `(exec -a ${marker} sleep 300 &); echo up; exec sleep ${agentSeconds}`,
  ]);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  reader.releaseLock();
  // Both the detached process and the stage (PID 1 inside) must go.
  const alive = () =>
    new Deno.Command("pgrep", { args: ["-f", marker] }).outputSync().success ||
    new Deno.Command("pgrep", { args: ["-fx", `sleep ${agentSeconds}`] }).outputSync().success;
  assert.ok(alive(), "the agent's background process should be running");
  child.kill("SIGKILL");
  await child.status;
  const deadline = Date.now() + 5000;
  while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(alive(), false, "agent processes survived the supervisor");
  await child.stdout.cancel().catch(() => {});
});

test("a command that does not exist: one line, exit 127", async () => {
  const r = await cli(["run", "-q", "-w", "/tmp", "--", "no-such-agent-binary"]);
  assert.equal(r.code, 127);
  assert.equal(r.stderr.trim(), "clawcage: command not found: no-such-agent-binary");
});

test("a command outside the granted paths: one line, exit 126 or 127", async () => {
  const r = await cli(["run", "-q", "-w", "/tmp", "--", "/root/agent"]);
  assert.ok(r.code === 126 || r.code === 127, `exit ${r.code}`);
  assert.equal(r.stderr.trim().split("\n").length, 1);
});

Deno.test("run: a missing policy file is one clear line, exit 125", async () => {
  const r = await cli(["run", "--policy", "/nonexistent.yaml", "--rootless", "--", "/bin/true"]);
  assert.equal(r.code, 125);
  assert.equal(r.stderr.trim(), "/nonexistent.yaml:0:0: cannot read policy: no such file");
});

Deno.test("run: a policy mistake is reported as file:line:column", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/p.yaml`,
    "version: 1\nfilesystem_policy:\n  read_onyl: [/usr]\n",
  );
  const r = await cli(["run", "--policy", `${dir}/p.yaml`, "--rootless", "--", "/bin/true"]);
  assert.equal(r.code, 125);
  assert.match(
    r.stderr.trim(),
    /p\.yaml:3:3: unknown key "read_onyl" in filesystem_policy \(did you mean "read_only"\?\)$/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cli: unknown command and --help", async () => {
  assert.equal((await cli(["frobnicate"])).code, 2);
  const h = await cli(["run", "--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /Usage: clawcage run/);
});

Deno.test("doctor --json describes every layer", async () => {
  const r = await cli(["doctor", "--json"]);
  const report = JSON.parse(r.stdout);
  const names = report.checks.map((c: { name: string }) => c.name);
  for (
    const n of [
      "kernel",
      "landlock",
      "seccomp",
      "util-linux",
      "namespaces",
      "user namespaces",
      "cgroup v2",
    ]
  ) {
    assert.ok(names.includes(n), n);
  }
  assert.equal(r.code, report.ok ? 0 : 1);
});

test("the demo passes on the default policy", async () => {
  const r = await cli(["demo"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Every action behaved as the policy says/);
});

test("an interactive shell works on a terminal (script(1) gives it a pty)", async () => {
  const scriptBin = ["/usr/bin/script", "/bin/script"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!scriptBin) return;
  const inner = selfCommand(["run", "-q", "-w", "/tmp", "--", "/bin/bash", "-i"]).map((a) =>
    `'${a}'`
  ).join(" ");
  const child = new Deno.Command(scriptBin, {
    args: ["-qec", inner, "/dev/null"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("echo inside-$((6*7)); tty; exit 5\n"));
  await w.close();
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout).replaceAll("\r", "");
  assert.match(text, /inside-42\n/);
  assert.match(text, /^\/dev\/pts\/\d+$/m);
  assert.equal(out.code, 5);
});

Deno.test("run: bad usage is exit 125 (never an agent's code) with one line", async () => {
  for (const args of [["run", "--bogus", "--", "/bin/true"], ["run", "-p"]]) {
    const r = await cli(args);
    assert.equal(r.code, 125, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^clawcage: run: .*see clawcage run --help/);
  }
  const r = await cli(["run", "--bogus", "--", "/bin/true"]);
  assert.match(r.stderr, /unknown option --bogus/);
});

test("settings that load but are ignored (as in OpenShell) are warned about at every run", async () => {
  const policy = Deno.makeTempFileSync({ suffix: ".yaml" });
  Deno.writeTextFileSync(
    policy,
    `version: 1
filesystem_policy:
  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc]
process:
  run_as_user: nobody
network_policies:
  statsig:
    endpoints:
      - host: api.statsig.example.com
        port: 443
        rules:
          - allow: {method: POST, path: /v1/**}
    binaries:
      - path: /usr/bin/node
`,
  );
  try {
    const r = await cli(["run", "-q", "-p", policy, "-w", "/tmp", "--", "/bin/true"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /^clawcage: warning: .*: network_policies\.statsig\.endpoints\.0\.rules: rules is ignored: without protocol/m,
    );
  } finally {
    Deno.removeSync(policy);
  }
});

test("a policy that grants no files: the command is refused as not granted (126)", async () => {
  // The stage maps libseccomp before Landlock, so it needs no grant of its own.
  const policy = Deno.makeTempFileSync({ suffix: ".yaml" });
  Deno.writeTextFileSync(policy, "version: 1\nprocess:\n  run_as_user: nobody\n");
  try {
    const r = await cli(["run", "-q", "-p", policy, "-w", "/tmp", "--", "/bin/true"]);
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stderr, /permission denied: \/bin\/true \(not granted by the policy\)/);
  } finally {
    Deno.removeSync(policy);
  }
});

/** Child pids of `pid` (all its threads). */
function childrenOf(pid: number): number[] {
  try {
    return Deno.readDirSync(`/proc/${pid}/task`).toArray().flatMap((t) =>
      Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim().split(/\s+/)
    ).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

test("a SIGTERM at any moment of start-up stops the run (never lost)", async () => {
  // Aimed at the stage's start (PID 1 of the new namespace, before it has signal handlers, when
  // the kernel drops what it is sent) and just after. The agent would run 20 s: a lost SIGTERM
  // shows as a run that outlives the deadline below.
  for (const afterStageMs of [0, 10, 25, 50, 80, 120, 200]) {
    const mark = `20.${afterStageMs}4242`; // this run's agent, findable in /proc
    const argv = selfCommand(sh(`sleep ${mark}`));
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    // The stage: the child of unshare(1), the supervisor's child.
    for (let i = 0; i < 1000; i++) {
      const stage = childrenOf(child.pid).flatMap(childrenOf);
      if (stage.length > 0) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    await new Promise((r) => setTimeout(r, afterStageMs));
    const started = Date.now();
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 8000);
    const status = await child.output();
    clearTimeout(timer);
    const took = Date.now() - started;
    assert.ok(took < 8000, `SIGTERM ${afterStageMs} ms after the stage started was lost`);
    assert.ok(
      status.code === 143 || status.signal === "SIGTERM",
      `${afterStageMs} ms: ${JSON.stringify(status)} ${new TextDecoder().decode(status.stderr)}`,
    );
    // Nothing of the sandbox outlives the run (the stage, killed early, takes the agent along).
    let left: string[] = [];
    for (let i = 0; i < 50; i++) {
      left = Deno.readDirSync("/proc").toArray().filter((e) => /^\d+$/.test(e.name)).filter((e) => {
        try {
          return Deno.readTextFileSync(`/proc/${e.name}/cmdline`).includes(mark);
        } catch {
          return false;
        }
      }).map((e) => e.name);
      if (left.length === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(left, [], `${afterStageMs} ms: processes left behind`);
  }
});
