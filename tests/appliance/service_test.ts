// `clawcage service` and `clawcage status` against real sandboxed agents: two agents, a
// crash-looping one (backoff visible in status), SIGHUP reload, the router with a systemd
// credential, denials from an audit log, SIGTERM and SIGKILL with no orphans (scanned in /proc).

import assert from "node:assert/strict";
import { AuditLog } from "../../core/audit/writer.ts";
import { agentSpec, POLICY_RELOADED } from "../../core/service/service.ts";
import { parsePolicy } from "../../core/policy/load.ts";
import { supervisorVars } from "../../core/policy/supervisor_env.ts";
import { countDenials } from "../../core/service/denials.ts";
import {
  Child,
  MAX_LINE,
  nextDelay,
  prefixLines,
  shouldRestart,
} from "../../core/service/child.ts";
import { cli } from "../helpers/cli.ts";
import { closedPort, CLOUD_KEY, Upstream } from "../router/helpers.ts";
import { openaiUpstream } from "../router/upstreams.ts";
import { sandboxSkipReason } from "../helpers/host.ts";
import { systemProgramSkip } from "../egress/sandbox_skip.ts";
import {
  describe,
  processesMentioning,
  ServiceProcess,
  waitFor,
  waitNoProcesses,
} from "./service_helpers.ts";

const skip = sandboxSkipReason();
if (skip) console.log(`service tests with sandboxed agents skipped: ${skip}`);
const noCurl = systemProgramSkip(["curl"]);
if (!skip && noCurl) console.log(`service inference.local test skipped: ${noCurl}`);

const POLICY = new URL("../../policies/default.yaml", import.meta.url).pathname;

Deno.test("backoff doubles up to the cap and starts over after a healthy run", () => {
  const b = {
    initial_delay_ms: 100,
    max_delay_ms: 500,
    healthy_after_ms: 1000,
    stop_timeout_ms: 1,
  };
  assert.equal(nextDelay(null, 10, b), 100);
  assert.equal(nextDelay(100, 10, b), 200);
  assert.equal(nextDelay(400, 10, b), 500);
  assert.equal(nextDelay(500, 10, b), 500);
  assert.equal(nextDelay(500, 1000, b), 100);
  assert.equal(shouldRestart("on-failure", 0, null), false);
  assert.equal(shouldRestart("on-failure", 1, null), true);
  assert.equal(shouldRestart("on-failure", 0, "SIGKILL"), true);
  assert.equal(shouldRestart("always", 0, null), true);
  assert.equal(shouldRestart("never", 1, null), false);
});

Deno.test("service: configuration mistakes are one line with file:line:column, exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
  try {
    await Deno.copyFile(POLICY, `${dir}/p.yaml`);
    const ok = (more: string) =>
      `version: 1\nagents:\n  a:\n    command: [sleep, '1']\n    policy: p.yaml\n${more}`;
    const cases: [string, RegExp][] = [
      [
        ok("    workdir: /nonexistent-dir\n"),
        /agent a: workdir \/nonexistent-dir is not an existing directory/,
      ],
      [
        ok("    workdir: /\n    user: no-such-user-xyz\n"),
        /agent a: user "no-such-user-xyz" does not exist on this host/,
      ],
      [
        "version: 1\nagents:\n  a:\n    command: [sleep, '1']\n    polcy: p.yaml\n    workdir: /\n",
        /clawcage\.yaml:5:5: unknown key "polcy" in agents\.a \(did you mean "policy"\?\)/,
      ],
      [
        "version: 1\nagents:\n  a:\n    command: []\n    policy: p.yaml\n    workdir: /\n",
        /:4:14: agents\.a\.command/,
      ],
      ["version: 2\n", /:1:10: version: must be 1/],
      [
        "version: 1\nagents:\n  a:\n    command: [sleep, '1']\n    policy: missing.yaml\n    workdir: /\n",
        /agent a: .*missing\.yaml:0:0: cannot read policy: no such file/,
      ],
    ];
    for (const [text, expected] of cases) {
      await Deno.writeTextFile(`${dir}/clawcage.yaml`, text);
      const r = await cli(["service", "--config", `${dir}/clawcage.yaml`]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
      assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, "no stack trace");
    }
    await Deno.writeTextFile(`${dir}/clawcage.yaml`, ok("    workdir: /\n    user: nobody\n"));
    const checked = await cli(["service", "--check", "--config", `${dir}/clawcage.yaml`]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /clawcage\.yaml: ok \(1 agent\(s\)\)/);
    // Files that decide what runs as root must be root's and not writable by others.
    await Deno.chmod(`${dir}/clawcage.yaml`, 0o666);
    const loose = await cli(["service", "--check", "--config", `${dir}/clawcage.yaml`]);
    assert.equal(loose.code, 2, loose.stderr);
    assert.match(loose.stderr, /clawcage\.yaml: mode 0666 lets other users change it: refusing it/);
    await Deno.chmod(`${dir}/clawcage.yaml`, 0o644);
    await Deno.chmod(`${dir}/p.yaml`, 0o664);
    const loosePolicy = await cli(["service", "--check", "--config", `${dir}/clawcage.yaml`]);
    assert.equal(loosePolicy.code, 2, loosePolicy.stderr);
    assert.match(loosePolicy.stderr, /agent a: .*p\.yaml: mode 0664 lets other users change it/);
    await Deno.chmod(`${dir}/p.yaml`, 0o644);
    const r = await cli(["service", "--config", `${dir}/absent.yaml`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /absent\.yaml: cannot read the service configuration: no such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("service: child output is prefixed per line, and an endless line is cut", async () => {
  // As a pipe delivers it: pieces of 8 KiB, the long line never ended until the end.
  const chunks = ["one\ntwo\n", ...Array(10).fill("x".repeat(8192)), "\nlast"];
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      const next = chunks.shift();
      if (next === undefined) c.close();
      else c.enqueue(encoder.encode(next));
    },
  });
  let written = "";
  await prefixLines(stream, "[a] ", {
    write(p: Uint8Array) {
      written += new TextDecoder().decode(p);
      return Promise.resolve(p.length);
    },
  });
  const lines = written.split("\n").slice(0, -1);
  assert.deepEqual(lines.slice(0, 2), ["[a] one", "[a] two"]);
  assert.equal(lines.at(-1), "[a] last");
  assert.ok(lines.every((l) => l.startsWith("[a] ") && l.length <= MAX_LINE + 4 + 8192));
  assert.equal(lines.slice(2, -1).map((l) => l.slice(4)).join(""), "x".repeat(8192 * 10));
  assert.ok(lines.length > 4, "the long line was cut into pieces");
});

Deno.test("status: denials of the last hour are counted from the audit log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
  try {
    assert.deepEqual(countDenials(undefined, 0), {
      count: null,
      unavailable: "no audit_log in the service configuration",
    });
    const log = await AuditLog.open(`${dir}/audit`, { keyDir: `${dir}/key` });
    for (let i = 0; i < 3; i++) {
      log.record({
        class: "network",
        activity: "refuse",
        dst: { host: "x.example", port: 443 },
        decision: "deny",
      });
    }
    log.record({
      class: "http",
      activity: "request",
      dst: { host: "y.example" },
      http: { method: "GET", url: "/" },
      decision: "allow",
    });
    await log.close();
    const hourAgo = Date.now() - 3600_000;
    assert.equal(countDenials(`${dir}/audit`, hourAgo).count, 3);
    assert.equal(countDenials(`${dir}/audit`, Date.now() + 60_000).count, 0);
    // A segment last written two hours ago is not read at all.
    const twoHoursAgo = new Date(Date.now() - 7200_000);
    for (const e of Deno.readDirSync(`${dir}/audit`)) {
      Deno.utimeSync(`${dir}/audit/${e.name}`, twoHoursAgo, twoHoursAgo);
    }
    assert.equal(countDenials(`${dir}/audit`, hourAgo).count, 0);
    const missing = countDenials(`${dir}/nothing`, hourAgo);
    assert.equal(missing.count, null);
    assert.match((missing as { unavailable: string }).unavailable, /cannot read audit log/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status: no service running is exit 3 with one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
  try {
    const r = await cli(["status", "--runtime-dir", dir]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /clawcage service is not running \(no answer on .*status\.sock\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function config(dir: string, agents: string, extra = ""): string {
  return `version: 1
runtime_dir: ${dir}/run
state_dir: ${dir}/state
restart:
  initial_delay_ms: 200
  max_delay_ms: 800
  healthy_after_ms: 20000
  stop_timeout_ms: 3000
agents:
${agents}${extra}`;
}

const agent = (name: string, command: string, more = "") =>
  `  ${name}:\n    command: ${command}\n    policy: policy.yaml\n    workdir: work\n${more}`;

Deno.test({
  name: "service: two agents, a crash loop with backoff, SIGHUP reload, SIGTERM leaves nothing",
  ignore: skip !== null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
    await Deno.mkdir(`${dir}/work`);
    await Deno.copyFile(POLICY, `${dir}/policy.yaml`);
    const socket = `${dir}/run/status.sock`;
    const cfg = `${dir}/clawcage.yaml`;
    // The audit log (written by the real writer): one denial and one allowed connection.
    const log = await AuditLog.open(`${dir}/audit`, { keyDir: `${dir}/audit-key` });
    log.record({
      class: "network",
      activity: "refuse",
      dst: { host: "evil.example", port: 443 },
      decision: "deny",
    });
    log.record({
      class: "network",
      activity: "open",
      dst: { host: "ok.example", port: 443 },
      decision: "allow",
    });
    await log.close();
    await Deno.writeTextFile(
      cfg,
      config(
        dir,
        agent(
          "alpha",
          `["sh", "-c", "echo alpha FOO=$FOO; exec sleep 7301"]`,
          "    env: {FOO: bar}\n",
        ) +
          agent("beta", `["sleep", "7302"]`) +
          agent("crash", `["sh", "-c", "echo crash; exit 3"]`),
        `audit_log: ${dir}/audit\n`,
      ),
    );
    const svc = new ServiceProcess(cfg);
    try {
      let s = await waitFor(
        socket,
        (s) =>
          s.agents.find((a) => a.name === "crash")!.restarts >= 3 &&
          s.agents.filter((a) => a.state === "running" && a.name !== "crash").length === 2,
        "two running agents and three restarts of the crash loop",
        60_000,
        svc,
      );
      const byName = (st: typeof s, n: string) => st.agents.find((a) => a.name === n)!;
      const crash = byName(s, "crash");
      assert.equal(crash.last_exit?.code, 3);
      // 200, 400, 800, 800...: after three failures the delay has reached the cap.
      if (crash.state === "backoff") assert.ok(crash.backoff_ms! >= 800, JSON.stringify(crash));
      assert.equal(s.denials_last_hour.count, 1);
      assert.ok((await Deno.stat(socket)).mode! & 0o777, "socket exists");
      assert.equal((await Deno.stat(socket)).mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(`${dir}/run`)).mode! & 0o777, 0o700);
      assert.match(svc.output, /\[alpha\] alpha FOO=bar/);

      // The CLI: a table and JSON.
      const human = await cli(["status", "--runtime-dir", `${dir}/run`]);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^alpha\s+running\s+\d+\s+0\s/m);
      assert.match(human.stdout, /^crash\s+(backoff \(\d+ ms, next start in \d+s\)|running)\s/m);
      assert.match(human.stdout, /denials in the last hour: 1 \(audit log /);
      const json = JSON.parse(
        (await cli(["status", "--json", "--runtime-dir", `${dir}/run`])).stdout,
      );
      assert.equal(json.agents.length, 3);

      // SIGHUP: beta removed, gamma added, alpha's command changed, crash unchanged.
      const alphaPid = byName(s, "alpha").pid;
      const crashRestarts = byName(s, "crash").restarts;
      await Deno.writeTextFile(
        cfg,
        config(
          dir,
          agent("alpha", `["sleep", "7303"]`) +
            agent("crash", `["sh", "-c", "echo crash; exit 3"]`) +
            agent("gamma", `["sleep", "7304"]`),
          // The same audit root: each agent's log directory (<root>/<agent>) is unchanged.
          `audit_log: ${dir}/audit\n`,
        ),
      );
      svc.child.kill("SIGHUP");
      s = await waitFor(
        socket,
        (s) =>
          s.last_reload !== null && byName(s, "gamma")?.state === "running" &&
          byName(s, "alpha")?.state === "running",
        "the reload",
        60_000,
        svc,
      );
      assert.deepEqual(s.last_reload!.changes.sort(), [
        "agent alpha: changed, restarted",
        "agent beta: removed, stopped",
        "agent gamma: added, started",
      ]);
      assert.equal(s.agents.some((a) => a.name === "beta"), false);
      assert.notEqual(byName(s, "alpha").pid, alphaPid);
      assert.ok(byName(s, "crash").restarts >= crashRestarts, "crash kept its history");
      assert.deepEqual(await waitNoProcesses("sleep\x007302"), [], "beta's agent is gone");
      assert.deepEqual(await waitNoProcesses("sleep\x007301"), [], "alpha's old agent is gone");
      assert.equal(s.denials_last_hour.count, 1, "still counted after the reload");

      // A changed policy file under an unchanged entry: the agent's run reloads it live.
      await svc.waitForOutput(/\[gamma\] clawcage: sandbox: /);
      const gammaPid = byName(s, "gamma").pid;
      let previous = s.last_reload!.at;
      await Deno.writeTextFile(`${dir}/policy.yaml`, "\n# edited\n", { append: true });
      svc.child.kill("SIGHUP");
      s = await waitFor(socket, (s) => s.last_reload!.at !== previous, "the second reload");
      assert.ok(s.last_reload!.changes.includes(`agent gamma: ${POLICY_RELOADED}`));
      await svc.waitForOutput(/\[gamma\] clawcage: policy reloaded from /, 10_000);
      assert.match(
        svc.output,
        /\[gamma\] clawcage: policy reloaded from \S+policy\.yaml \(no change\)/,
      );
      assert.equal(byName(s, "gamma").pid, gammaPid);

      // An invalid configuration is refused; the agents keep running.
      previous = s.last_reload!.at;
      await Deno.writeTextFile(cfg, "version: 1\nagents: [oops\n");
      svc.child.kill("SIGHUP");
      s = await waitFor(socket, (s) => s.last_reload!.at !== previous, "the refused reload");
      assert.equal(s.last_reload!.ok, false);
      assert.match(s.last_reload!.error!, /clawcage\.yaml:\d+:\d+: invalid YAML/);
      assert.equal(byName(s, "gamma").pid, gammaPid);
      assert.equal(byName(s, "gamma").state, "running");

      // SIGTERM: everything stops, nothing is left, the socket is removed.
      assert.ok(processesMentioning("sleep\x007304").length > 0, "gamma's agent runs");
      svc.child.kill("SIGTERM");
      const st = await svc.exit();
      assert.equal(st.code, 0, svc.output);
      const left = await waitNoProcesses(dir, 5000);
      assert.deepEqual(left, [], `orphans:\n${describe(left)}`);
      await assert.rejects(Deno.stat(socket), Deno.errors.NotFound);
      assert.match(svc.output, /clawcage service: stopped/);
    } finally {
      try {
        svc.child.kill("SIGKILL");
      } catch { /* exited */ }
      await svc.exit();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "service: SIGKILL of the service leaves no orphans (parent-death signal)",
  ignore: skip !== null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
    await Deno.mkdir(`${dir}/work`);
    await Deno.copyFile(POLICY, `${dir}/policy.yaml`);
    const cfg = `${dir}/clawcage.yaml`;
    await Deno.writeTextFile(cfg, config(dir, agent("one", `["sleep", "7311"]`)));
    const svc = new ServiceProcess(cfg);
    try {
      await waitFor(
        `${dir}/run/status.sock`,
        (s) => s.agents[0].state === "running",
        "the agent",
        60_000,
        svc,
      );
      // Wait for the agent itself (inside its sandbox), not only its `clawcage run`.
      const deadline = Date.now() + 30_000;
      while (!processesMentioning("sleep\x007311").length && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(processesMentioning("sleep\x007311").length > 0, svc.output);
      svc.child.kill("SIGKILL");
      await svc.exit();
      const left = await waitNoProcesses(dir, 10_000);
      assert.deepEqual(left, [], `orphans:\n${describe(left)}`);
    } finally {
      try {
        svc.child.kill("SIGKILL");
      } catch { /* exited */ }
      await svc.exit();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "service: router with a cloud key from a systemd credential, SIGHUP reloads its privacy section; agent user",
  ignore: skip !== null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
    const up = openaiUpstream("cloud");
    await Deno.mkdir(`${dir}/work`);
    await Deno.mkdir(`${dir}/creds`);
    await Deno.writeTextFile(`${dir}/creds/cloud-key`, `${CLOUD_KEY}\n`);
    await Deno.copyFile(POLICY, `${dir}/policy.yaml`);
    const routerPolicy = (model: string) =>
      `version: 1
privacy:
  backends:
    up: { type: openai, base_url: "${up.url}/v1", api_key_env: SVC_CLOUD_KEY, model: ${model} }
  cloud: up
  pseudonymise: [EMAIL_ADDRESS]
`;
    await Deno.writeTextFile(`${dir}/router.yaml`, routerPolicy("m1"));
    const port = closedPort();
    const cfg = `${dir}/clawcage.yaml`;
    await Deno.writeTextFile(
      cfg,
      config(
        dir,
        agent("who", `["sh", "-c", "echo uid=$(id -u); exec sleep 7321"]`, "    user: daemon\n"),
        `router:\n  policy: router.yaml\n  listen: 127.0.0.1:${port}\n  credentials: {SVC_CLOUD_KEY: cloud-key}\n`,
      ),
    );
    const svc = new ServiceProcess(cfg, { CREDENTIALS_DIRECTORY: `${dir}/creds` });
    const socket = `${dir}/run/status.sock`;
    const ask = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hi" }] }),
      });
      await res.body?.cancel();
      return res.status;
    };
    try {
      let s = await waitFor(
        socket,
        (s) => s.router?.state === "running" && s.agents[0].state === "running",
        "router and agent",
        60_000,
        svc,
      );
      assert.deepEqual(s.router!.backends, [
        { name: "up", type: "openai", role: "cloud", base_url: `${up.url}/v1`, model: "m1" },
      ]);
      // The router answers once it listens.
      const deadline = Date.now() + 30_000;
      let code = 0;
      while (Date.now() < deadline) {
        code = await ask().catch(() => 0);
        if (code) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(code, 200, svc.output);
      assert.equal(up.received.at(-1)!.headers.get("authorization"), `Bearer ${CLOUD_KEY}`);
      assert.equal((up.received.at(-1)!.json as { model: string }).model, "m1");
      // The agent starts after its sandbox (and PDP) are up: wait for its line.
      await svc.waitForOutput(/\[who\] uid=1\n/);
      assert.match(svc.output, /\[who\] uid=1\n/);

      await Deno.writeTextFile(`${dir}/router.yaml`, routerPolicy("m2"));
      svc.child.kill("SIGHUP");
      s = await waitFor(socket, (s) => s.last_reload !== null, "the reload", 30_000, svc);
      assert.deepEqual(s.last_reload!.changes, [
        "router: policy changed, privacy section reloaded (SIGHUP)",
      ]);
      assert.equal(s.router!.backends[0].model, "m2");
      const reloadDeadline = Date.now() + 10_000;
      while (Date.now() < reloadDeadline) {
        assert.equal(await ask(), 200);
        if ((up.received.at(-1)!.json as { model: string }).model === "m2") break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal((up.received.at(-1)!.json as { model: string }).model, "m2", svc.output);
      assert.equal(s.router!.pid, (await waitFor(socket, () => true, "status")).router!.pid);

      svc.child.kill("SIGTERM");
      assert.equal((await svc.exit()).code, 0, svc.output);
      const left = await waitNoProcesses(dir, 5000);
      assert.deepEqual(left, [], `orphans:\n${describe(left)}`);
    } finally {
      try {
        svc.child.kill("SIGKILL");
      } catch { /* exited */ }
      await svc.exit();
      await up.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The agent's policy: the default one plus a privacy section whose cloud backend needs a key. */
const privacyPolicyText = async (cloudUrl: string) =>
  `${await Deno.readTextFile(POLICY)}
privacy:
  backends:
    cloud: { type: openai, base_url: "${cloudUrl}/v1", api_key_env: SVC_AGENT_CLOUD_KEY, model: m1 }
  cloud: cloud
`;

Deno.test("service: an agent's supervisor secrets come from the service, never via env:", async () => {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
  try {
    await Deno.mkdir(`${dir}/work`);
    await Deno.mkdir(`${dir}/creds`);
    await Deno.writeTextFile(`${dir}/creds/agent-key`, `${CLOUD_KEY}\n`);
    await Deno.writeTextFile(`${dir}/policy.yaml`, await privacyPolicyText("http://127.0.0.1:9"));
    const cfg = `${dir}/clawcage.yaml`;
    const check = async (more: string, env: Record<string, string> = {}, start = false) => {
      await Deno.writeTextFile(cfg, config(dir, agent("inf", `["true"]`, more)));
      return await cli(["service", ...(start ? [] : ["--check"]), "--config", cfg], { env });
    };
    // --check runs outside the service's environment (the installer): it cannot see the keys.
    const checked = await check("");
    assert.equal(checked.code, 0, checked.stderr);
    // Starting the service without the key: exit 2 (systemd does not restart it), one line.
    const missing = await check("", {}, true);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(
      missing.stderr,
      /^clawcage: agent inf: SVC_AGENT_CLOUD_KEY \(\S+\/policy\.yaml: privacy\.backends\.cloud\.api_key_env\) is not set in the service's environment; set it with EnvironmentFile= or LoadCredential= and agents\.inf\.credentials\n$/,
    );
    const inEnv = await check("    env: {SVC_AGENT_CLOUD_KEY: x}\n", { SVC_AGENT_CLOUD_KEY: "k" });
    assert.equal(inEnv.code, 2, inEnv.stderr);
    assert.match(inEnv.stderr, /agent inf: env: SVC_AGENT_CLOUD_KEY is a secret of the supervisor/);
    const stray = await check("    credentials: {OTHER_KEY: agent-key}\n", {
      SVC_AGENT_CLOUD_KEY: "k",
      CREDENTIALS_DIRECTORY: `${dir}/creds`,
    });
    assert.equal(stray.code, 2, stray.stderr);
    assert.match(stray.stderr, /agent inf: credentials: OTHER_KEY is not named by \S+policy\.yaml/);
    const noDir = await check("    credentials: {SVC_AGENT_CLOUD_KEY: agent-key}\n", {}, true);
    assert.equal(noDir.code, 2);
    assert.match(noDir.stderr, /agents\.inf\.credentials needs \$CREDENTIALS_DIRECTORY/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervisorVars: api_key_env, credentials' env and headers_env, each name once", () => {
  const policy = parsePolicy(
    `version: 1
privacy:
  backends:
    a: { type: openai, base_url: "http://127.0.0.1:1/v1", api_key_env: KEY_A, model: m }
    b: { type: openai, base_url: "http://127.0.0.1:2/v1", api_key_env: KEY_A, model: m }
  cloud: a
credentials:
  gh: { env: GH_TOKEN, hosts: [api.github.com] }
  f: { file: /etc/clawcage/f.token, hosts: [x.example] }
audit:
  export:
    otlp: { url: "http://127.0.0.1:4318/v1/logs", headers_env: { authorization: OTLP_TOKEN } }
`,
    "p.yaml",
  );
  assert.deepEqual(supervisorVars(policy), [
    { name: "KEY_A", key: "privacy.backends.a.api_key_env", required: true },
    { name: "GH_TOKEN", key: "credentials.gh.env", required: true },
    { name: "OTLP_TOKEN", key: "audit.export.otlp.headers_env.authorization", required: false },
  ]);
});

Deno.test("service: agentSpec puts supervisor secrets in clawcage run's environment only", () => {
  Deno.env.set("SVC_SPEC_KEY_A", "value-a");
  Deno.env.set("SVC_SPEC_KEY_B", "value-b");
  try {
    const base = {
      command: ["true"],
      policy: "/p.yaml",
      workdir: "/",
      env: { SHOWN: "1" },
      credentials: {},
      restart: "never" as const,
      rootless: false,
    };
    const a = agentSpec("x", {
      ...base,
      supervisor_vars: [{ name: "SVC_SPEC_KEY_A", key: "k", required: true }],
    });
    assert.equal(a.env.SVC_SPEC_KEY_A, "value-a");
    assert.equal(a.env.SHOWN, "1");
    const envArgs = a.argv.flatMap((v, i) => a.argv[i - 1] === "--env" ? [v] : []);
    assert.deepEqual(envArgs, ["SHOWN"], "only env: entries are forwarded into the agent");
    // A policy that names another variable changes the spec: the reload restarts the agent.
    const b = agentSpec("x", {
      ...base,
      supervisor_vars: [
        { name: "SVC_SPEC_KEY_A", key: "k", required: true },
        { name: "SVC_SPEC_KEY_B", key: "k2", required: true },
      ],
    });
    assert.equal(b.env.SVC_SPEC_KEY_B, "value-b");
    assert.notEqual(JSON.stringify(a), JSON.stringify(b));
    // From a systemd credential ($CREDENTIALS_DIRECTORY) before the environment.
    const creds = Deno.makeTempDirSync({ prefix: "clawcage-svc-creds-" });
    Deno.writeTextFileSync(`${creds}/key-a`, "from-credential\n");
    Deno.env.set("CREDENTIALS_DIRECTORY", creds);
    try {
      const fromCred = agentSpec("x", {
        ...base,
        credentials: { SVC_SPEC_KEY_A: "key-a" },
        supervisor_vars: [{ name: "SVC_SPEC_KEY_A", key: "k", required: true }],
      });
      assert.equal(fromCred.env.SVC_SPEC_KEY_A, "from-credential");
    } finally {
      Deno.env.delete("CREDENTIALS_DIRECTORY");
      Deno.removeSync(creds, { recursive: true });
    }
    // An optional one (headers_env) that is not set is left out; a required one is an error.
    const c = agentSpec("x", {
      ...base,
      supervisor_vars: [{ name: "SVC_SPEC_UNSET", key: "k", required: false }],
    });
    assert.equal("SVC_SPEC_UNSET" in c.env, false);
    assert.throws(
      () =>
        agentSpec("x", {
          ...base,
          supervisor_vars: [{ name: "SVC_SPEC_UNSET", key: "privacy.x", required: true }],
        }),
      /agent x: SVC_SPEC_UNSET \(\/p\.yaml: privacy\.x\) is not set/,
    );
  } finally {
    Deno.env.delete("SVC_SPEC_KEY_A");
    Deno.env.delete("SVC_SPEC_KEY_B");
  }
});

Deno.test({
  name:
    "service: an agent reaches http://inference.local with the cloud key in its supervisor only",
  ignore: skip !== null || noCurl !== null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "clawcage-svc-" });
    // The cloud: answers only with the right key.
    const cloud = new Upstream((rec) =>
      rec.headers.get("authorization") === `Bearer ${CLOUD_KEY}`
        ? Response.json({
          id: "c1",
          object: "chat.completion",
          created: 0,
          model: "m1",
          choices: [{
            index: 0,
            message: { role: "assistant", content: "KEY-ACCEPTED" },
            finish_reason: "stop",
          }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        })
        : Response.json({ error: { message: "bad key" } }, { status: 401 })
    );
    await Deno.mkdir(`${dir}/work`);
    await Deno.writeTextFile(`${dir}/policy.yaml`, await privacyPolicyText(cloud.url));
    const cfg = `${dir}/clawcage.yaml`;
    const body = JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hi" }] });
    const script = `env | sed 's/^/ENV /'; ` +
      `curl -sS -H 'content-type: application/json' -d '${body}' "$OPENAI_BASE_URL/chat/completions"; ` +
      `echo; echo done-inf`;
    await Deno.writeTextFile(
      cfg,
      config(dir, agent("inf", JSON.stringify(["sh", "-c", script]), "    restart: never\n")),
    );
    const svc = new ServiceProcess(cfg, { SVC_AGENT_CLOUD_KEY: CLOUD_KEY });
    try {
      await svc.waitForOutput(/\[inf\] done-inf/, 60_000);
      assert.match(svc.output, /\[inf\] done-inf/, svc.output);
      assert.match(svc.output, /\[inf\] ENV OPENAI_BASE_URL=http:\/\/inference\.local\/v1\n/);
      assert.match(svc.output, /\[inf\] \{.*"content":"KEY-ACCEPTED"/, svc.output);
      assert.equal(cloud.received.length, 1);
      assert.equal(cloud.received[0].headers.get("authorization"), `Bearer ${CLOUD_KEY}`);
      // Neither the key nor its variable is in the agent's environment.
      assert.ok(!svc.output.includes(CLOUD_KEY), svc.output);
      assert.doesNotMatch(svc.output, /ENV SVC_AGENT_CLOUD_KEY/);
      svc.child.kill("SIGTERM");
      assert.equal((await svc.exit()).code, 0, svc.output);
      const left = await waitNoProcesses(dir, 5000);
      assert.deepEqual(left, [], `orphans:\n${describe(left)}`);
    } finally {
      try {
        svc.child.kill("SIGKILL");
      } catch { /* exited */ }
      await svc.exit();
      await cloud.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("service: a process left holding a child's output does not hide the child's exit", async () => {
  // A clawcage run child cannot normally leave one (the stage reaps and kills leftovers), but
  // the supervisor must not depend on it: a plain command here.
  const child = new Child(
    {
      name: "bg",
      argv: ["sh", "-c", "sleep 7331 & echo started-bg; exit 3"],
      env: { PATH: "/usr/bin:/bin" },
      restart: "never",
    },
    { initial_delay_ms: 100, max_delay_ms: 100, healthy_after_ms: 1000, stop_timeout_ms: 1000 },
    () => {},
  );
  try {
    child.start();
    const deadline = Date.now() + 10_000;
    while (child.status().state === "running" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(child.status().state, "exited");
    assert.equal(child.status().last_exit?.code, 3);
    assert.ok(processesMentioning("sleep\x007331").length > 0, "the leftover still holds the pipe");
  } finally {
    await child.stop();
    for (const pid of processesMentioning("sleep\x007331")) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
});
