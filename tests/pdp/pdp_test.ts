// The policy-decision process as a real process (`clawcage __pdp`, started by PdpClient):
// decisions, lockdown seen from outside, bad input, reload, and failing closed when the PDP is
// killed or stopped.

import assert from "node:assert/strict";
import { PdpClient, type PdpEvent, PdpStartError } from "../../core/pdp/client.ts";
import * as libc from "../../ffi/libc.ts";
import { selfCommand } from "../../core/self.ts";
import { hasSeccomp } from "../helpers/host.ts";
import { CURL, policyYaml } from "./helpers.ts";

const ignore = !hasSeccomp;
if (ignore) {
  console.log("skipping PDP process tests: libseccomp.so.2 missing (the PDP refuses to run)");
}

const REST_POLICY = `version: 1
network_policies:
  github:
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        enforcement: enforce
        access: read-only
    binaries:
      - path: ${CURL}
`;

interface Started {
  client: PdpClient;
  events: PdpEvent[];
  dir: string;
  [Symbol.asyncDispose](): Promise<void>;
}

async function start(policyText: string, deadlineMs = 200): Promise<Started> {
  const dir = await Deno.makeTempDir({ prefix: "pdp-test-" });
  const events: PdpEvent[] = [];
  const client = await PdpClient.start({
    policyText,
    policyFile: "test.yaml",
    runtimeDir: dir,
    deadlineMs,
    backoffMs: 50,
    onEvent: (e) => events.push(e),
  });
  return {
    client,
    events,
    dir,
    async [Symbol.asyncDispose]() {
      await client.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const ask = (client: PdpClient, host: string, extra: Record<string, string> = {}) =>
  client.decide({ binary: CURL, host, port: 443, ...extra });

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function procStatus(pid: number): Record<string, string> {
  return Object.fromEntries(
    Deno.readTextFileSync(`/proc/${pid}/status`).split("\n").filter(Boolean).map((l) => {
      const i = l.indexOf(":");
      return [l.slice(0, i), l.slice(i + 1).trim()];
    }),
  );
}

Deno.test({ name: "PDP answers connection- and request-level decisions", ignore }, async () => {
  await using pdp = await start(REST_POLICY, 5000);
  const allowed = await ask(pdp.client, "api.github.com");
  assert.equal(allowed.verdict, "allow", allowed.reason);
  assert.equal(allowed.entry, "github");
  assert.equal(allowed.inspect, true);
  const other = await ask(pdp.client, "evil.example.com");
  assert.equal(other.verdict, "deny");
  const get = await ask(pdp.client, "api.github.com", { method: "GET", path: "/repos/x" });
  assert.equal(get.verdict, "allow", get.reason);
  const post = await ask(pdp.client, "api.github.com", { method: "POST", path: "/repos/x" });
  assert.equal(post.verdict, "deny", post.reason);
  const wrongBinary = await pdp.client.decide({
    binary: "/usr/bin/python3",
    host: "api.github.com",
    port: 443,
  });
  assert.equal(wrongBinary.verdict, "deny");
  // A program started by an allowed one (ancestors, nearest first) goes over the wire too.
  const child = await pdp.client.decide({
    binary: "/usr/bin/python3",
    ancestors: ["/bin/sh", CURL],
    host: "api.github.com",
    port: 443,
  });
  assert.equal(child.verdict, "allow", child.reason);
  // Many at once, answered in any interleaving by id.
  const many = await Promise.all(
    Array.from({ length: 500 }, (_, i) => ask(pdp.client, i % 2 ? "api.github.com" : "x.org")),
  );
  many.forEach((d, i) => assert.equal(d.verdict, i % 2 ? "allow" : "deny"));
});

Deno.test({ name: "PDP is locked down before it answers (seen from /proc)", ignore }, async () => {
  await using pdp = await start(REST_POLICY, 5000);
  const pid = pdp.client.pid!;
  const status = procStatus(pid);
  assert.equal(status.Seccomp, "2", "seccomp filter mode");
  assert.equal(status.NoNewPrivs, "1");
  assert.ok(Number(status.Seccomp_filters) >= 1);
  const started = pdp.events.find((e) => e.kind === "started");
  assert.ok(started?.kind === "started" && started.lockdown.seccompRules > 40);
  assert.ok(
    started?.kind === "started" && started.lockdown.noExecMemory,
    "jitless, no exec memory",
  );
  // The PDP cannot open files any more, yet a reload (parsing needs no files) still works.
  const reloaded = await pdp.client.reload(policyYaml(["example.org"]));
  assert.deepEqual(reloaded, { ok: true, changed: ["network_policies"] });
  assert.equal((await ask(pdp.client, "example.org")).verdict, "allow");
  assert.equal(pdp.client.pid, pid, "same process");
});

Deno.test(
  { name: "the PDP holds only its own descriptors, none leaked to us", ignore },
  async () => {
    // A descriptor without O_CLOEXEC, as a careless caller of clawcage could leave open.
    const leaked = libc.open("/etc/hostname", libc.O.RDONLY);
    try {
      await using pdp = await start(REST_POLICY, 5000);
      const targets = [...Deno.readDirSync(`/proc/${pdp.client.pid}/fd`)].map((e) =>
        Deno.readLinkSync(`/proc/${pdp.client.pid}/fd/${e.name}`)
      );
      assert.ok(!targets.includes("/etc/hostname"), JSON.stringify(targets));
      // Pipes, sockets, its event loop, stdio, and (from source only) Deno's own SQLite caches
      // (a known limit, docs/pdp.md): no other file of the filesystem.
      const stderr = Deno.readLinkSync(`/proc/${pdp.client.pid}/fd/2`);
      const files = targets.filter((t) =>
        t.startsWith("/") && !t.startsWith("/dev/") && t !== stderr &&
        !/\/(dep|node)_analysis_cache_v\d/.test(t)
      );
      assert.deepEqual(files, [], JSON.stringify(targets));
    } finally {
      libc.close(leaked);
    }
  },
);

Deno.test(
  { name: "bad lines are answered with an error and never crash the PDP", ignore },
  async () => {
    await using pdp = await start(REST_POLICY, 5000);
    const conn = await Deno.connect({ transport: "unix", path: pdp.client.socketPath });
    const enc = new TextEncoder();
    const send = (s: string | Uint8Array) => conn.write(typeof s === "string" ? enc.encode(s) : s);
    await send("not json\n");
    await send('{"id":9,"host":"a"}\n');
    await send(new Uint8Array(100_000).fill(0x61));
    await send("\n");
    await send(new Uint8Array([0xff, 0xfe, 0x0a]));
    await send(`{"id":10,"binary":"${CURL}","host":"api.github.com","port":443}\n`);
    const lines: string[] = [];
    const buf = new Uint8Array(65536);
    let text = "";
    while (lines.length < 5) {
      const n = await conn.read(buf);
      assert.ok(n !== null, `connection stayed open (got ${JSON.stringify(lines)})`);
      text += new TextDecoder().decode(buf.subarray(0, n));
      const parts = text.split("\n");
      text = parts.pop()!;
      lines.push(...parts);
    }
    conn.close();
    const replies = lines.map((l) => JSON.parse(l));
    assert.match(replies[0].error, /not JSON/);
    assert.equal(replies[1].id, 9);
    assert.match(replies[1].error, /binary/);
    assert.match(replies[2].error, /longer than/);
    assert.match(replies[3].error, /not JSON/);
    assert.equal(replies[4].id, 10);
    assert.equal(replies[4].verdict, "allow");
    assert.equal((await ask(pdp.client, "api.github.com")).verdict, "allow");
  },
);

Deno.test(
  { name: "kill -9 of the PDP: decisions deny, then it is restarted", ignore },
  async () => {
    await using pdp = await start(policyYaml(["example.org"]), 5000);
    const pid = pdp.client.pid!;
    assert.equal((await ask(pdp.client, "example.org")).verdict, "allow");
    Deno.kill(pid, "SIGKILL");
    await until("the client to notice", () => pdp.client.pid !== pid);
    const during = await ask(pdp.client, "example.org");
    if (pdp.client.pid === null) {
      assert.equal(during.verdict, "deny");
      assert.match(during.reason, /policy-decision process|starting/);
    }
    const failed = pdp.events.find((e) => e.kind === "failed");
    assert.ok(
      failed?.kind === "failed" && /SIGKILL|closed its socket/.test(failed.reason),
      JSON.stringify(failed),
    );
    await until("the restart", () => pdp.client.pid !== null);
    assert.notEqual(pdp.client.pid, pid);
    assert.equal((await ask(pdp.client, "example.org")).verdict, "allow");
    assert.equal(pdp.client.restarts, 1);
  },
);

Deno.test(
  { name: "a stopped PDP (SIGSTOP) misses the deadline: deny, killed, restarted", ignore },
  async () => {
    await using pdp = await start(policyYaml(["example.org"]), 200);
    const pid = pdp.client.pid!;
    // Warm: the first decisions may take longer on a loaded machine.
    await until(
      "a fast answer",
      async () => (await ask(pdp.client, "example.org")).verdict === "allow",
    );
    Deno.kill(pid, "SIGSTOP");
    const t0 = performance.now();
    const [a, b] = await Promise.all([ask(pdp.client, "example.org"), ask(pdp.client, "x.org")]);
    const took = performance.now() - t0;
    assert.equal(a.verdict, "deny");
    assert.equal(b.verdict, "deny");
    assert.match(a.reason, /did not answer within 200 ms/);
    assert.ok(took < 1000, `denied after ${took} ms`);
    const later = await ask(pdp.client, "example.org");
    if (pdp.client.pid === null) {
      assert.equal(later.verdict, "deny");
    }
    await until("the restart", () => pdp.client.pid !== null && pdp.client.pid !== pid);
    await until(
      "allow again",
      async () => (await ask(pdp.client, "example.org")).verdict === "allow",
    );
    // The stopped one was killed, not left behind.
    await until("the old PDP to be gone", () => {
      try {
        return procStatus(pid).State?.startsWith("Z") ?? true;
      } catch {
        return true;
      }
    });
  },
);

Deno.test({ name: "terminal signals do not stop the PDP; SIGTERM ends it", ignore }, async () => {
  await using pdp = await start(policyYaml(["example.org"]), 5000);
  const pid = pdp.client.pid!;
  for (const sig of ["SIGINT", "SIGQUIT", "SIGTSTP", "SIGHUP"] as const) Deno.kill(pid, sig);
  await new Promise((r) => setTimeout(r, 200));
  assert.match(procStatus(pid).State, /^[SR]/, "running, not stopped");
  assert.equal((await ask(pdp.client, "example.org")).verdict, "allow");
  assert.equal(pdp.client.pid, pid);
  Deno.kill(pid, "SIGTERM");
  await until("the restart", () => pdp.client.pid !== null && pdp.client.pid !== pid);
  const failed = pdp.events.find((e) => e.kind === "failed");
  assert.match(
    failed?.kind === "failed" ? failed.reason : "",
    /exited \(code 0\)|closed its socket/,
  );
});

Deno.test({ name: "reload changes decisions; static sections are refused", ignore }, async () => {
  await using pdp = await start(policyYaml(["example.org"]), 5000);
  assert.equal((await ask(pdp.client, "example.net")).verdict, "deny");
  const ok = await pdp.client.reload(policyYaml(["example.net"]));
  assert.equal(ok.ok, true);
  assert.equal((await ask(pdp.client, "example.net")).verdict, "allow");
  assert.equal((await ask(pdp.client, "example.org")).verdict, "deny");

  const refused = await pdp.client.reload(
    policyYaml(["example.org"], "filesystem_policy:\n  read_write: [/tmp]\n"),
  );
  assert.equal(refused.ok, false);
  assert.match(
    !refused.ok ? refused.error : "",
    /filesystem_policy is fixed while the sandbox runs/,
  );
  assert.equal((await ask(pdp.client, "example.net")).verdict, "allow", "unchanged");

  const bad = await pdp.client.reload("version: 1\nnetwork_policies:\n  x: {endpoints: 3}\n");
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.error : "", /^test\.yaml:3:\d+: /);
  assert.equal((await ask(pdp.client, "example.net")).verdict, "allow", "unchanged");

  // A restart serves the last accepted policy, not the first one.
  Deno.kill(pdp.client.pid!, "SIGKILL");
  await until("the restart", () => pdp.client.restarts === 1 && pdp.client.pid !== null);
  assert.equal((await ask(pdp.client, "example.net")).verdict, "allow");
});

Deno.test(
  { name: "a bad policy at start is a PdpStartError with file:line:column", ignore },
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await assert.rejects(
        PdpClient.start({
          policyText: "version: 1\nnetwork_polices: {}\n",
          policyFile: "p.yaml",
          runtimeDir: dir,
        }),
        (e) => e instanceof PdpStartError && /^p\.yaml:2:1: .*network_policies/.test(e.message),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

function pdpChildren(): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${e.name}/status`);
      const cmdline = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (Number(/PPid:\s+(\d+)/.exec(status)?.[1]) === Deno.pid && cmdline.includes("__pdp")) {
        out.push(Number(e.name));
      }
    } catch { /* gone */ }
  }
  return out;
}

Deno.test({ name: "aborting a start stops the PDP being started", ignore }, async () => {
  const dir = await Deno.makeTempDir();
  const events: PdpEvent[] = [];
  const stop = new AbortController();
  try {
    const starting = PdpClient.start({
      policyText: policyYaml(["example.org"]),
      policyFile: "p.yaml",
      runtimeDir: dir,
      signal: stop.signal,
      onEvent: (e) => events.push(e),
    });
    await until("the PDP process", () => pdpChildren().length > 0);
    stop.abort();
    await assert.rejects(
      starting,
      (e) => e instanceof PdpStartError && e.message === "start aborted",
    );
    await until("no PDP left", () => pdpChildren().length === 0, 5000);
    assert.deepEqual(events, [], "no failure or restart reported");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "restarts that fail back off exponentially; decisions deny until one works",
  ignore,
}, async () => {
  const dir = await Deno.makeTempDir();
  const broken = `${dir}/broken`;
  // The first start works; while `broken` exists, starting the PDP fails.
  const command = [
    "/bin/sh",
    "-c",
    `if [ -e "${broken}" ]; then exit 3; fi; exec "$@"`,
    "sh",
    ...selfCommand(["__pdp"], ["--no-code-cache"]),
  ];
  const events: PdpEvent[] = [];
  const client = await PdpClient.start({
    policyText: policyYaml(["example.org"]),
    policyFile: "p.yaml",
    runtimeDir: dir,
    deadlineMs: 5000,
    backoffMs: 20,
    maxBackoffMs: 160,
    command,
    onEvent: (e) => events.push(e),
  });
  try {
    await Deno.writeTextFile(broken, "");
    Deno.kill(client.pid!, "SIGKILL");
    const failures = () => events.filter((e) => e.kind === "failed");
    await until("five failures", () => failures().length >= 5);
    const delays = failures().map((e) => e.kind === "failed" ? e.restartInMs : 0);
    assert.deepEqual(delays.slice(0, 5), [20, 40, 80, 160, 160]);
    assert.match(failures()[1].kind === "failed" ? failures()[1].reason : "", /restart failed/);
    const d = await client.decide({ binary: CURL, host: "example.org", port: 443 });
    assert.equal(d.verdict, "deny");
    await Deno.remove(broken);
    await until("a working restart", () => client.pid !== null);
    assert.equal(
      (await client.decide({ binary: CURL, host: "example.org", port: 443 })).verdict,
      "allow",
    );
  } finally {
    await client.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a reload the PDP does not answer: refused, PDP restarted on the old policy",
  ignore,
}, async () => {
  const dir = await Deno.makeTempDir();
  const client = await PdpClient.start({
    policyText: policyYaml(["example.org"]),
    policyFile: "p.yaml",
    runtimeDir: dir,
    deadlineMs: 5000,
    reloadTimeoutMs: 300,
    backoffMs: 20,
  });
  try {
    const pid = client.pid!;
    Deno.kill(pid, "SIGSTOP");
    const r = await client.reload(policyYaml(["example.net"]));
    assert.equal(r.ok, false);
    assert.match(
      !r.ok ? r.error : "",
      /did not answer the reload; it is restarted on the previous/,
    );
    await until("the restart", () => client.pid !== null && client.pid !== pid);
    assert.equal(
      (await client.decide({ binary: CURL, host: "example.org", port: 443 })).verdict,
      "allow",
    );
    assert.equal(
      (await client.decide({ binary: CURL, host: "example.net", port: 443 })).verdict,
      "deny",
    );
    // The control pipe is in step again: the next reload works.
    assert.equal((await client.reload(policyYaml(["example.net"]))).ok, true);
    assert.equal(
      (await client.decide({ binary: CURL, host: "example.net", port: 443 })).verdict,
      "allow",
    );
  } finally {
    await client.close();
    await Deno.remove(dir, { recursive: true });
  }
});
