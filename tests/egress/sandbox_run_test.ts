// `clawcage run` end to end, through the real binary's code path: policy file -> decide() ->
// proxy -> bridge -> agent. The upstream lives in a network namespace this test creates, on a
// veth pair with 10.201.N.0/30 addresses (the SSRF guard refuses loopback, and a policy may not
// allow it), so the policy's allowed_ips is what lets the proxy connect.

import assert from "node:assert/strict";
import { selfCommand, systemProgram } from "../../core/self.ts";
import { cli } from "../helpers/cli.ts";
import { sandboxSkipReason, systemProgramSkip } from "./sandbox_skip.ts";
import { AGENT_POLICY_HEAD, agentWorkdir } from "./sandbox_helpers.ts";

const ip = systemProgram("ip");
const skip = sandboxSkipReason() ?? systemProgramSkip(["curl", "python3"]) ??
  (ip ? null : "ip (iproute2) not installed");
if (skip) console.log(`skipping clawcage run egress tests: ${skip}`);

async function sh(cmd: string[]): Promise<void> {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

interface Upstream {
  address: string;
  port: number;
  close(): Promise<void>;
}

/** python3 http.server in a fresh network namespace, reachable from the host over a veth. */
/** A policy that lets `binary` reach the namespaced upstream. */
function upstreamPolicy(upstream: Upstream, binary: string): string {
  return `${AGENT_POLICY_HEAD}network_policies:
  upstream:
    endpoints:
      - host: ${upstream.address}
        port: ${upstream.port}
        allowed_ips: [${upstream.address}/32]
    binaries:
      - path: ${binary}
`;
}

async function namespacedUpstream(dir: string): Promise<Upstream> {
  const n = crypto.getRandomValues(new Uint8Array(1))[0];
  const tag = crypto.getRandomValues(new Uint32Array(1))[0].toString(36).slice(0, 5);
  const ns = `ccbr-${tag}`, host = `ccb${tag}h`, peer = `ccb${tag}n`;
  const address = `10.201.${n}.2`;
  const port = 8080;
  await sh([ip!, "netns", "add", ns]);
  const cleanup = async () => {
    await sh([ip!, "link", "del", host]).catch(() => {});
    await sh([ip!, "netns", "del", ns]).catch(() => {});
  };
  try {
    await sh([ip!, "link", "add", host, "type", "veth", "peer", "name", peer]);
    await sh([ip!, "link", "set", peer, "netns", ns]);
    await sh([ip!, "addr", "add", `10.201.${n}.1/30`, "dev", host]);
    await sh([ip!, "link", "set", host, "up"]);
    await sh([ip!, "-n", ns, "addr", "add", `${address}/30`, "dev", peer]);
    await sh([ip!, "-n", ns, "link", "set", peer, "up"]);
    await sh([ip!, "-n", ns, "link", "set", "lo", "up"]);
  } catch (e) {
    await cleanup();
    throw e;
  }
  const server = new Deno.Command(ip!, {
    args: [
      "netns",
      "exec",
      ns,
      "/usr/bin/python3",
      "-m",
      "http.server",
      String(port),
      "--bind",
      address,
      "--directory",
      dir,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0;; i++) {
    try {
      (await Deno.connect({ hostname: address, port })).close();
      break;
    } catch (e) {
      if (i > 100) {
        server.kill();
        await server.status;
        await cleanup();
        throw e;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    address,
    port,
    async close() {
      server.kill();
      await server.status;
      await cleanup();
    },
  };
}

Deno.test({
  name: `egress run: clawcage run applies network_policies by binary end to end${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== null,
  async fn() {
    const site = await Deno.makeTempDir();
    await Deno.writeTextFile(`${site}/hello.txt`, "hello from the namespace\n");
    const upstream = await namespacedUpstream(site);
    const workdir = await agentWorkdir();
    try {
      const policy = `${workdir}/policy.yaml`;
      await Deno.writeTextFile(policy, upstreamPolicy(upstream, "/usr/bin/curl"));
      const url = `http://${upstream.address}:${upstream.port}`;
      const script = `curl -sS ${url}/hello.txt;
        /usr/bin/python3 -c '
import urllib.request as u, urllib.error as e
try:
    u.urlopen("${url}/hello.txt")
except e.HTTPError as x:
    print("python", x.code, x.read().decode())';
        curl -sS --noproxy "*" --connect-timeout 2 ${url}/hello.txt >/dev/null 2>&1; echo "direct=$?"`;
      const r = await cli([
        "run",
        "-q",
        "-p",
        policy,
        "-w",
        workdir,
        "--",
        "/bin/sh",
        "-c",
        script,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split("\n").filter((l) => l !== "");
      assert.equal(lines[0], "hello from the namespace");
      assert.match(lines[1], /^python 403 /);
      const denial = JSON.parse(lines[1].slice("python 403 ".length));
      assert.equal(denial.binary, Deno.realPathSync("/usr/bin/python3"));
      assert.equal(denial.host, upstream.address);
      // Without the proxy there is no route out of the sandbox (curl: 7, couldn't connect).
      assert.equal(lines[2], "direct=7");
    } finally {
      await upstream.close();
      await Deno.remove(workdir, { recursive: true });
      await Deno.remove(site, { recursive: true });
    }
  },
});

async function waitForFile(path: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await Deno.stat(path);
      return;
    } catch {
      if (Date.now() > end) throw new Error(`timed out waiting for ${path}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

Deno.test({
  name: `egress run: SIGHUP reloads network_policies for the running agent; the PDP decides${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== null,
  async fn() {
    const site = await Deno.makeTempDir();
    await Deno.writeTextFile(`${site}/hello.txt`, "hello\n");
    const upstream = await namespacedUpstream(site);
    const workdir = await agentWorkdir();
    const policyFor = (binary: string) => upstreamPolicy(upstream, binary);
    try {
      const policy = `${workdir}/policy.yaml`;
      await Deno.writeTextFile(policy, policyFor("/usr/bin/curl"));
      const get =
        `curl -sS -o /dev/null -w '%{http_code}\\n' http://${upstream.address}:${upstream.port}/hello.txt`;
      // One agent process throughout: it fetches, says so, waits for the reload, fetches again.
      const script = `${get}; echo $$ > ${workdir}/ready;
        while [ ! -e ${workdir}/go ]; do sleep 0.05; done; ${get}; echo $$`;
      const argv = selfCommand([
        "run",
        "-q",
        "-p",
        policy,
        "-w",
        workdir,
        "--",
        "/bin/sh",
        "-c",
        script,
      ]);
      const child = new Deno.Command(argv[0], {
        args: argv.slice(1),
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const output = child.output();
      await waitForFile(`${workdir}/ready`, 20_000);
      // The same endpoint, now for another binary only: curl loses it.
      await Deno.writeTextFile(policy, policyFor("/usr/bin/wget"));
      child.kill("SIGHUP");
      await new Promise((r) => setTimeout(r, 1500));
      await Deno.writeTextFile(`${workdir}/go`, "");
      const out = await output;
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const [before, after, pid2] = stdout.trim().split("\n");
      const pid1 = (await Deno.readTextFile(`${workdir}/ready`)).trim();
      assert.equal(before, "200", stdout);
      assert.equal(after, "403", stdout + stderr);
      assert.equal(pid1, pid2, "the agent was not restarted");
      assert.match(stderr, /policy reloaded from .*policy\.yaml \(changed: network_policies\)/);
    } finally {
      await upstream.close();
      await Deno.remove(workdir, { recursive: true });
      await Deno.remove(site, { recursive: true });
    }
  },
});
