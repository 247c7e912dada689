// Escape conformance suite: every case starts a real sandbox (`clawcage run`) with a probe
// inside that makes one attempt, and asserts what the kernel answered. Run with namespaces
// (root) and rootless (Landlock + seccomp only); a table of the results is printed at the end.

import assert, { equal as assertEquals } from "node:assert/strict";
import { cli } from "../helpers/cli.ts";
import { cc, landlockAbi, sandboxSkipReason } from "../helpers/host.ts";

type Outcome = "CONTAINED" | "ALLOWED";
type Mode = "namespaces" | "rootless";

interface Fixture {
  root: string;
  probe: string;
  work: string;
  secret: string;
  policy: string;
  tcpPort: number;
  abstractName: string;
  runSocket: string;
  blockDevice: string | null;
}

interface Case {
  name: string;
  args: (f: Fixture) => string[];
  expect: Outcome;
  /** Expected rootless outcome; "n/a" when only namespaces can contain it (stated in docs). */
  rootless?: Outcome | "n/a";
  /** Run the probe under bash with extra setup (e.g. an inherited descriptor). */
  viaBash?: (f: Fixture, cmd: string[]) => string[];
}

const CASES: Case[] = [
  // files
  { name: "read /etc/shadow", args: () => ["read", "/etc/shadow"], expect: "CONTAINED" },
  {
    name: "read an ssh key outside the grants",
    args: (f) => ["read", f.secret],
    expect: "CONTAINED",
  },
  { name: "write /etc", args: () => ["create", "/etc/clawcage-escape"], expect: "CONTAINED" },
  {
    name: "write /usr/local/bin",
    args: () => ["create", "/usr/local/bin/clawcage-escape"],
    expect: "CONTAINED",
  },
  {
    name: "write the probe's read-only dir",
    args: (f) => ["create", `${f.root}/bin/dropped`],
    expect: "CONTAINED",
  },
  {
    name: "write in the working directory",
    args: (f) => ["create-ok", `${f.work}/ok.txt`],
    expect: "ALLOWED",
  },
  {
    name: "read a granted system file",
    args: () => ["read-ok", "/etc/hostname"],
    expect: "ALLOWED",
  },
  { name: "execute a granted program", args: () => ["exec-ok", "/bin/true"], expect: "ALLOWED" },
  {
    name: "follow a symlink out of the workdir",
    args: (f) => ["symlink-out", f.secret, `${f.work}/link`],
    expect: "CONTAINED",
  },
  {
    name: "hard-link a file out of the workdir",
    args: (f) => ["hardlink-out", f.secret, `${f.work}/hard`],
    expect: "CONTAINED",
  },
  {
    name: "rename a workdir file outside",
    args: (f) => ["rename-out", `${f.work}/victim`, `${f.root}/secret/moved`],
    expect: "CONTAINED",
  },
  { name: "escape via /proc/self/root", args: (f) => ["proc-root", f.secret], expect: "CONTAINED" },
  { name: "write /proc/sys", args: () => ["write-proc-sys"], expect: "CONTAINED" },
  {
    name: "read through an inherited descriptor",
    args: () => ["inherited-fd", "7"],
    expect: "CONTAINED",
    viaBash: (f, cmd) => ["bash", "-c", `exec 7<${f.secret}; exec "$@"`, "bash", ...cmd],
  },
  { name: "create a device node", args: (f) => ["mknod", f.work], expect: "CONTAINED" },
  {
    name: "open a host block device",
    args: (f) => ["open-dev", f.blockDevice ?? "/dev/vda"],
    expect: "CONTAINED",
  },
  { name: "gain root through a setuid binary", args: () => ["setuid-root"], expect: "CONTAINED" },
  // processes
  { name: "read /proc/1/environ", args: () => ["proc1-environ"], expect: "CONTAINED" },
  {
    name: "see host processes",
    args: () => ["host-pid", String(Deno.pid)],
    expect: "CONTAINED",
    rootless: "n/a",
  },
  {
    name: "signal the supervisor",
    args: () => ["signal-host", String(Deno.pid)],
    expect: "CONTAINED",
  },
  { name: "ptrace a process", args: () => ["ptrace"], expect: "CONTAINED" },
  { name: "process_vm_readv", args: () => ["process-vm-readv"], expect: "CONTAINED" },
  { name: "SIGKILL the sandbox's init", args: () => ["kill-init"], expect: "CONTAINED" },
  // namespaces and mounts
  { name: "mount a filesystem", args: (f) => ["mount", f.work], expect: "CONTAINED" },
  { name: "chroot", args: () => ["chroot"], expect: "CONTAINED" },
  { name: "unshare -U (user namespace)", args: () => ["unshare-user"], expect: "CONTAINED" },
  { name: "unshare a network namespace", args: () => ["unshare-net"], expect: "CONTAINED" },
  { name: "clone with CLONE_NEWUSER", args: () => ["clone-newuser"], expect: "CONTAINED" },
  { name: "clone3 (flags unreadable by seccomp)", args: () => ["clone3"], expect: "CONTAINED" },
  { name: "setns", args: () => ["setns"], expect: "CONTAINED" },
  { name: "change the hostname", args: () => ["sethostname"], expect: "CONTAINED" },
  // kernel attack surface
  { name: "load a kernel module (init_module)", args: () => ["init-module"], expect: "CONTAINED" },
  {
    name: "load a kernel module (finit_module)",
    args: () => ["finit-module"],
    expect: "CONTAINED",
  },
  { name: "io_uring", args: () => ["io-uring"], expect: "CONTAINED" },
  { name: "keyctl", args: () => ["keyctl"], expect: "CONTAINED" },
  { name: "add_key", args: () => ["add-key"], expect: "CONTAINED" },
  { name: "bpf", args: () => ["bpf"], expect: "CONTAINED" },
  { name: "perf_event_open", args: () => ["perf-event-open"], expect: "CONTAINED" },
  { name: "userfaultfd", args: () => ["userfaultfd"], expect: "CONTAINED" },
  { name: "reboot", args: () => ["reboot"], expect: "CONTAINED" },
  { name: "change the clock (clock_settime)", args: () => ["clock-settime"], expect: "CONTAINED" },
  { name: "change the clock (settimeofday)", args: () => ["settimeofday"], expect: "CONTAINED" },
  { name: "inject keystrokes (TIOCSTI)", args: () => ["tiocsti"], expect: "CONTAINED" },
  { name: "32-bit syscall (int 0x80)", args: () => ["int80"], expect: "CONTAINED" },
  // network
  { name: "raw socket", args: () => ["raw-socket"], expect: "CONTAINED" },
  { name: "packet socket", args: () => ["packet-socket"], expect: "CONTAINED" },
  { name: "UDP socket", args: () => ["udp-socket"], expect: "CONTAINED" },
  { name: "UDP over IPv6", args: () => ["udp6-socket"], expect: "CONTAINED" },
  { name: "MPTCP socket", args: () => ["mptcp-socket"], expect: "CONTAINED" },
  { name: "vsock socket", args: () => ["vsock-socket"], expect: "CONTAINED" },
  { name: "netlink audit socket", args: () => ["netlink-audit"], expect: "CONTAINED" },
  { name: "netlink route socket", args: () => ["netlink-route"], expect: "ALLOWED" },
  {
    name: "connect to a host TCP port",
    args: (f) => ["connect-host-tcp", String(f.tcpPort)],
    expect: "CONTAINED",
  },
  {
    name: "abstract unix socket on the host",
    args: (f) => ["abstract-unix", f.abstractName],
    expect: "CONTAINED",
  },
  {
    name: "host unix socket in /run (docker.sock-like)",
    args: (f) => ["unix-path", f.runSocket],
    expect: "CONTAINED",
    rootless: "n/a",
  },
  {
    name: "own loopback TCP",
    args: () => ["loopback-tcp"],
    expect: "ALLOWED",
    rootless: "CONTAINED",
  },
];

const skip = sandboxSkipReason() ?? (cc ? null : "no C compiler to build the probe");
const results = new Map<string, Partial<Record<Mode, string>>>();

let fixture: Fixture | null = null;
const helpers: Deno.ChildProcess[] = [];

async function setup(): Promise<Fixture> {
  if (fixture) return fixture;
  // Not under /tmp: rootless runs share the host's /tmp, which the policy grants.
  const root = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "clawcage-escape-" });
  await Deno.mkdir(`${root}/bin`);
  await Deno.mkdir(`${root}/work`);
  await Deno.mkdir(`${root}/secret`);
  const probe = `${root}/bin/probe`;
  const build = await new Deno.Command(cc!, {
    args: ["-O1", "-o", probe, new URL("./probe.c", import.meta.url).pathname],
  }).output();
  assert(build.success, new TextDecoder().decode(build.stderr));
  // A setuid-root copy: no_new_privs must make the bit inert.
  await Deno.copyFile(probe, `${root}/bin/probe-suid`);
  await Deno.chmod(`${root}/bin/probe-suid`, 0o4755);
  const secret = `${root}/secret/id_ed25519`;
  await Deno.writeTextFile(secret, "-----BEGIN OPENSSH PRIVATE KEY----- not really\n");
  await Deno.writeTextFile(`${root}/work/victim`, "agent data\n");
  // The agent's own files belong to it, so only the sandbox (not file modes) stops it.
  for (const p of [`${root}/work`, `${root}/work/victim`, `${root}/secret`, secret]) {
    await Deno.chown(p, 65534, 65534);
  }
  await Deno.chmod(`${root}/secret`, 0o755);
  await Deno.chmod(root, 0o755);
  const policy = `${root}/policy.yaml`;
  await Deno.writeTextFile(
    policy,
    `version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc, /dev/urandom, ${root}/bin]
  read_write: [/tmp, /dev/null]
landlock:
  compatibility: hard_requirement
process:
  run_as_user: nobody
`,
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) conn.close();
  })();
  const abstractName = `clawcage-escape-${Deno.pid}`;
  const runSocket = `/run/clawcage-escape-${Deno.pid}.sock`;
  for (const where of [`@${abstractName}`, runSocket]) {
    const server = new Deno.Command(probe, { args: ["serve-unix", where], stdout: "piped" })
      .spawn();
    const reader = server.stdout.getReader();
    const { value } = await reader.read();
    assert(new TextDecoder().decode(value).startsWith("READY"));
    reader.releaseLock();
    helpers.push(server);
  }
  let blockDevice: string | null = null;
  for (const entry of Deno.readDirSync("/dev")) {
    if (entry.name.match(/^(vd|sd|nvme|xvd)[a-z0-9]+$/)) blockDevice = `/dev/${entry.name}`;
  }
  fixture = {
    root,
    probe,
    work: `${root}/work`,
    secret,
    policy,
    tcpPort: (listener.addr as Deno.NetAddr).port,
    abstractName,
    runSocket,
    blockDevice,
  };
  addEventListener("unload", () => {
    listener.close();
    for (const h of helpers) h.kill("SIGKILL");
    Deno.removeSync(root, { recursive: true });
    try {
      Deno.removeSync(runSocket);
    } catch { /* gone */ }
  });
  return fixture;
}

async function attempt(c: Case, mode: Mode): Promise<{ status: string; line: string }> {
  const f = await setup();
  const probe = c.name.startsWith("gain root") ? `${f.root}/bin/probe-suid` : f.probe;
  const runArgs = ["run", "-q", "--policy", f.policy, "--workdir", f.work];
  if (mode === "rootless") runArgs.push("--rootless");
  const argv = [...runArgs, "--", probe, ...c.args(f)];
  const result = await cli(argv, { wrap: c.viaBash?.(f, []) });
  const line = result.stdout.trim().split("\n")[0] ?? "";
  const status = line.split(" ")[0];
  if (!["CONTAINED", "ESCAPED", "ALLOWED", "N/A"].includes(status)) {
    throw new Error(
      `probe gave no verdict (exit ${result.code}): ${result.stdout}${result.stderr}`,
    );
  }
  return { status, line };
}

for (const mode of ["namespaces", "rootless"] as Mode[]) {
  for (const c of CASES) {
    const expected = mode === "rootless" ? (c.rootless ?? c.expect) : c.expect;
    const ignore = skip !== null || expected === "n/a" || (mode === "rootless" && landlockAbi < 6);
    const why = skip ?? (expected === "n/a" ? "needs namespaces" : "");
    Deno.test({
      name: `escape[${mode}]: ${c.name}${ignore && why ? ` (skipped: ${why})` : ""}`,
      ignore,
      async fn() {
        const { status, line } = await attempt(c, mode);
        const row = results.get(c.name) ?? {};
        row[mode] = status === "N/A"
          ? "n/a"
          : status === expected
          ? status.toLowerCase()
          : `${status} (!)`;
        results.set(c.name, row);
        if (status === "N/A") return;
        assertEquals(status, expected, line);
      },
    });
  }
}

Deno.test({
  name: "escape: summary table",
  ignore: skip !== null,
  fn() {
    const lines = ["| case | namespaces | rootless |", "| --- | --- | --- |"];
    for (const c of CASES) {
      const r = results.get(c.name) ?? {};
      lines.push(
        `| ${c.name} | ${r.namespaces ?? "-"} | ${
          r.rootless ?? (c.rootless === "n/a" ? "n/a" : "-")
        } |`,
      );
    }
    console.log(`\n${lines.join("\n")}\n`);
    const escapes = [...results.values()].flatMap((r) => Object.values(r)).filter((v) =>
      v?.includes("(!)")
    );
    assertEquals(escapes.length, 0, "some cases escaped or were wrongly denied");
  },
});
