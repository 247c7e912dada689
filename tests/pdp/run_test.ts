// The PDP under `clawcage run` (root, namespaces): the agent cannot find, reach, signal or
// ptrace it, and SIGHUP to clawcage reloads it without restarting the agent.

import assert from "node:assert/strict";
import { selfCommand } from "../../core/self.ts";
import { cc, sandboxSkipReason } from "../helpers/host.ts";

const skip = sandboxSkipReason() ?? (cc ? null : "no C compiler to build the probe");
if (skip) console.log(`skipping clawcage run PDP tests: ${skip}`);

interface Running {
  proc: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  stderr: () => string;
  stdout: () => string;
}

function startRun(args: string[]): Running {
  const argv = selfCommand(["run", ...args]);
  const proc = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "", err = "";
  const dec = new TextDecoder();
  proc.stdout.pipeTo(new WritableStream({ write: (c) => void (out += dec.decode(c)) }));
  proc.stderr.pipeTo(new WritableStream({ write: (c) => void (err += dec.decode(c)) }));
  return { proc, stdin: proc.stdin.getWriter(), stderr: () => err, stdout: () => out };
}

async function until<T>(what: string, get: () => T | null | Promise<T | null>, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The PDP child of `parent` and its listening socket path (read from the host's /proc). */
function findPdp(parent: number): { pid: number; socket: string } | null {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${e.name}/status`);
      if (Number(/PPid:\s+(\d+)/.exec(status)?.[1]) !== parent) continue;
      const cmdline = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (!cmdline.split("\0").includes("__pdp")) continue;
      if (!/Seccomp:\s+2/.test(status)) return null; // not ready yet
      const inodes = new Set<string>();
      for (const fd of Deno.readDirSync(`/proc/${e.name}/fd`)) {
        try {
          const link = Deno.readLinkSync(`/proc/${e.name}/fd/${fd.name}`);
          const m = /^socket:\[(\d+)\]$/.exec(link);
          if (m) inodes.add(m[1]);
        } catch { /* closed meanwhile (a connection ended) */ }
      }
      for (const line of Deno.readTextFileSync("/proc/net/unix").split("\n").slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols.length >= 8 && inodes.has(cols[6]) && cols[7].endsWith("/pdp.sock")) {
          return { pid: Number(e.name), socket: cols[7] };
        }
      }
    } catch { /* gone or not ours */ }
  }
  return null;
}

async function askSocket(socket: string, host: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    const line = JSON.stringify({ id: 1, binary: "/usr/bin/curl", host, port: 443 }) + "\n";
    await conn.write(new TextEncoder().encode(line));
    const buf = new Uint8Array(8192);
    const n = await conn.read(buf);
    return JSON.parse(new TextDecoder().decode(buf.subarray(0, n!))).verdict;
  } finally {
    conn.close();
  }
}

function policy(host: string, readWrite = "[/tmp]"): string {
  return `version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc]
  read_write: ${readWrite}
process:
  run_as_user: nobody
network_policies:
  api:
    endpoints:
      - host: ${host}
        port: 443
        enforcement: enforce
    binaries:
      - path: /usr/bin/curl
`;
}

/** What the probe may report as ESCAPED, by mode. Rootless has no PID namespace: the agent
 * sees the PDP in /proc (documented in docs/pdp.md) but still cannot touch it. */
const VISIBLE_WITHOUT_PID_NAMESPACE = [
  "the PDP's /proc entry is absent",
  "no visible process runs __pdp",
];

for (const mode of ["namespaces", "rootless"] as const) {
  Deno.test({
    name: `run (${mode}): the agent cannot connect to, signal or ptrace the PDP${
      mode === "namespaces" ? ", nor find it" : ""
    }`,
    ignore: skip !== null,
    async fn() {
      const root = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "clawcage-pdp-" });
      await Deno.chmod(root, 0o755);
      const probe = `${root}/pdp_probe`;
      const build = await new Deno.Command(cc!, {
        args: ["-O1", "-o", probe, new URL("./fixtures/pdp_probe.c", import.meta.url).pathname],
      }).output();
      assert.ok(build.success, new TextDecoder().decode(build.stderr));
      const policyFile = `${root}/policy.yaml`;
      await Deno.writeTextFile(
        policyFile,
        policy("example.org").replace("[/usr,", `[${root},/usr,`),
      );
      const run = startRun([
        "-q",
        ...(mode === "rootless" ? ["--rootless"] : []),
        "--policy",
        policyFile,
        "-w",
        "/tmp",
        "--",
        "/bin/sh",
        "-c",
        `read pid sock; exec ${probe} "$pid" "$sock"`,
      ]);
      try {
        const pdp = await until("the PDP", () => findPdp(run.proc.pid));
        assert.ok(pdp.socket.startsWith("/run/clawcage/"), pdp.socket);
        assert.equal(await askSocket(pdp.socket, "example.org"), "allow", "the host side can ask");
        await run.stdin.write(new TextEncoder().encode(`${pdp.pid} ${pdp.socket}\n`));
        await run.stdin.close();
        await run.proc.status;
        const out = run.stdout();
        const lines = out.trim().split("\n");
        assert.equal(lines.length, 7, out + run.stderr());
        const mayEscape = mode === "rootless" ? VISIBLE_WITHOUT_PID_NAMESPACE : [];
        for (const line of lines) {
          const what = line.replace(/^(CONTAINED|ESCAPED) /, "").replace(/ \(.*\)$/, "");
          if (!mayEscape.includes(what)) assert.match(line, /^CONTAINED /, out);
        }
        // The PDP survived the agent's attempts and went away with the sandbox.
        assert.throws(() => Deno.statSync(`/proc/${pdp.pid}`));
        assert.throws(() => Deno.statSync(pdp.socket), "socket removed");
      } finally {
        try {
          run.proc.kill("SIGKILL");
        } catch { /* exited */ }
        await run.proc.status;
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "run: SIGHUP reloads network_policies in place, refuses static changes; kill -9 restarts",
  ignore: skip !== null,
  async fn() {
    const root = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "clawcage-pdp-" });
    const policyFile = `${root}/policy.yaml`;
    await Deno.writeTextFile(policyFile, policy("example.org"));
    // The agent waits for a line, then prints it: the same agent process must outlive reloads.
    const run = startRun([
      "-q",
      "--policy",
      policyFile,
      "-w",
      "/tmp",
      "--",
      "/bin/sh",
      "-c",
      "echo agent $$; read line; echo got $line",
    ]);
    try {
      const pdp = await until("the PDP", () => findPdp(run.proc.pid));
      await until("the agent", () => run.stdout().includes("agent") || null);
      assert.equal(await askSocket(pdp.socket, "example.org"), "allow");
      assert.equal(await askSocket(pdp.socket, "example.net"), "deny");

      await Deno.writeTextFile(policyFile, policy("example.net"));
      Deno.kill(run.proc.pid, "SIGHUP");
      await until("the reload", () => run.stderr().includes("policy reloaded") || null);
      assert.match(
        run.stderr(),
        /policy reloaded from .*policy\.yaml \(changed: network_policies\)/,
      );
      assert.equal(await askSocket(pdp.socket, "example.net"), "allow");
      assert.equal(await askSocket(pdp.socket, "example.org"), "deny");

      await Deno.writeTextFile(policyFile, policy("example.com", "[/tmp, /var/tmp]"));
      Deno.kill(run.proc.pid, "SIGHUP");
      await until("the refusal", () => run.stderr().includes("reload refused") || null);
      assert.match(run.stderr(), /policy reload refused: .*filesystem_policy is fixed/);
      assert.equal(await askSocket(pdp.socket, "example.net"), "allow", "unchanged");
      assert.equal(findPdp(run.proc.pid)?.pid, pdp.pid, `same PDP: ${run.stderr()}`);

      // kill -9: clawcage logs it, restarts the PDP on the reloaded policy; the agent stays.
      Deno.kill(pdp.pid, "SIGKILL");
      await until("the restart", () => run.stderr().includes("process restarted") || null);
      assert.match(run.stderr(), /policy-decision process failed: .*every decision is deny/);
      const second = await until("the new PDP", () => findPdp(run.proc.pid));
      assert.notEqual(second.pid, pdp.pid);
      assert.equal(await askSocket(second.socket, "example.net"), "allow");

      await run.stdin.write(new TextEncoder().encode("bye\n"));
      await run.stdin.close();
      const status = await run.proc.status;
      assert.equal(status.code, 0, run.stderr());
      assert.match(run.stdout(), /^agent \d+\ngot bye\n$/, "one agent, not restarted");
    } finally {
      try {
        run.proc.kill("SIGKILL");
      } catch { /* exited */ }
      await run.proc.status;
      await Deno.remove(root, { recursive: true });
    }
  },
});
