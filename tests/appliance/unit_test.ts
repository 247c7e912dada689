// scripts/clawcage.service: `systemd-analyze verify` where available, and its capability
// bounding set and NoNewPrivileges checked against a real sandboxed agent.

import assert from "node:assert/strict";
import { selfCommand, systemProgram } from "../../core/self.ts";
import { cli } from "../helpers/cli.ts";
import { sandboxSkipReason } from "../helpers/host.ts";

const UNIT = new URL("../../scripts/clawcage.service", import.meta.url).pathname;
const unitText = Deno.readTextFileSync(UNIT);
const analyze = systemProgram("systemd-analyze");
if (!analyze) console.log("systemd-analyze verify skipped: systemd-analyze not installed");
const skip = sandboxSkipReason();
if (skip) console.log(`unit capability test skipped: ${skip}`);

function setting(name: string): string[] {
  return unitText.split("\n").filter((l) => l.startsWith(`${name}=`)).map((l) =>
    l.slice(name.length + 1)
  );
}

Deno.test({
  name: "unit: systemd-analyze verify accepts it",
  ignore: analyze === null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "clawcage-unit-" });
    try {
      // verify checks that ExecStart's program exists: point it at one that does.
      await Deno.writeTextFile(
        `${dir}/clawcage.service`,
        unitText.replaceAll("/usr/local/bin/clawcage", "/bin/true"),
      );
      const out = await new Deno.Command(analyze!, {
        args: ["verify", `${dir}/clawcage.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, text);
      assert.equal(text.trim(), "", "no warnings");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("unit: the settings the design relies on are present", () => {
  assert.deepEqual(setting("Restart"), ["on-failure"]);
  assert.deepEqual(setting("NoNewPrivileges"), ["yes"]);
  assert.deepEqual(setting("KillMode"), ["mixed"]);
  assert.deepEqual(setting("RestrictNamespaces"), ["mnt pid net ipc uts cgroup"]);
  assert.deepEqual(
    setting("ProtectHostname"),
    [],
    "ProtectHostname breaks sethostname in the stage",
  );
  assert.deepEqual(setting("MemoryDenyWriteExecute"), [], "breaks V8's JIT");
  assert.deepEqual(
    setting("RuntimeDirectoryPreserve"),
    ["yes"],
    "/run/clawcage/kernel-audit must outlive a service restart",
  );
  assert.match(unitText, /^#\s+LoadCredential=/m);
  assert.deepEqual(setting("ExecStart"), [
    "/usr/local/bin/clawcage service --config /etc/clawcage/clawcage.yaml",
  ]);
});

Deno.test("unit: the binary prints the same unit it embeds", async () => {
  const r = await cli(["__print", "systemd-unit"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, unitText);
});

const AUDIT_DIR = `/var/log/clawcage/unit-test-${Deno.pid}`;
const FS_HARDENING = new URL("./fixtures/unit_fs_hardening.sh", import.meta.url).pathname;

/**
 * Runs a sandboxed agent with no_new_privs and only the capabilities in `caps`; with
 * `fsHardening`, inside the emulation of the unit's filesystem options.
 */
async function runUnder(
  caps: string[],
  fsHardening = false,
  devicesCgroup: string | null = null,
): Promise<{ code: number; out: string }> {
  const bounding = ["-all", ...caps.map((c) => "+" + c.toLowerCase().replace(/^cap_/, ""))];
  const wrap = fsHardening
    ? [systemProgram("unshare")!, "--mount", "--propagation", "private", "sh", FS_HARDENING]
    : [];
  const argv = [
    ...wrap,
    systemProgram("setpriv")!,
    "--no-new-privs",
    "--bounding-set",
    bounding.join(","),
    "--",
    // The agent uses the devices the default policy grants (and DevicePolicy=closed allows).
    ...selfCommand([
      "run",
      // Under the unit's ReadWritePaths, and not the default log another run may hold.
      "--audit-dir",
      AUDIT_DIR,
      "--",
      "sh",
      "-c",
      "echo agent-ran; id -u; head -c1 /dev/urandom >/dev/null && echo devices-ok",
    ]),
  ];
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: devicesCgroup ? { DEVICES_CGROUP: devicesCgroup } : {},
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(AUDIT_DIR, { recursive: true }).catch(() => {});
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

Deno.test({
  name: "unit: a sandboxed agent runs under the unit's capability bounding set and no_new_privs",
  ignore: skip !== null,
  async fn() {
    const caps = setting("CapabilityBoundingSet")[0].split(/\s+/);
    const ok = await runUnder(caps);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /agent-ran\n65534\n/);
    // The check can fail: without CAP_NET_ADMIN the stage cannot bring up loopback.
    const without = await runUnder(caps.filter((c) => c !== "CAP_NET_ADMIN"));
    assert.equal(without.code, 125, without.out);
    assert.match(without.out, /sandbox setup failed/);
  },
});

// The emulation's PrivateTmp (an empty /tmp) would hide a checkout or Deno under /tmp.
const underTmp = [Deno.execPath(), new URL("../..", import.meta.url).pathname].some((p) =>
  p.startsWith("/tmp/")
);
const fsSkip = skip ??
  (underTmp ? "the checkout or Deno is under /tmp, which the PrivateTmp emulation hides" : null);
if (fsSkip && !skip) console.log(`unit filesystem emulation test skipped: ${fsSkip}`);

/** systemd's DevicePolicy=closed list (src/core/bpf-devices.c, bpf_devices_allow_list_static). */
const CLOSED_DEVICES = [
  "/dev/null",
  "/dev/zero",
  "/dev/full",
  "/dev/random",
  "/dev/urandom",
  "/dev/tty",
  "/dev/ptmx",
];
const DEVICES_ROOT = "/sys/fs/cgroup/devices";

/** The character-device majors of /proc/devices whose names match `glob` (systemd: fnmatch). */
function charMajors(glob: string): number[] {
  const re = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*")}$`);
  const text = Deno.readTextFileSync("/proc/devices");
  const chars = text.slice(0, text.indexOf("Block devices:"));
  return [...chars.matchAll(/^\s*(\d+) (\S+)$/gm)].filter((m) => re.test(m[2])).map((m) =>
    Number(m[1])
  );
}

/**
 * The unit's DevicePolicy=closed + DeviceAllow= as cgroup v1 device rules, the way systemd
 * writes them to devices.allow on a cgroup v1 host (missing paths and unknown majors skipped).
 */
export function deviceRules(unit: string): string[] {
  const rules: string[] = [];
  const node = (path: string, perms: string) => {
    let st: Deno.FileInfo;
    try {
      st = Deno.statSync(path);
    } catch {
      return;
    }
    const rdev = st.rdev ?? 0;
    const major = (rdev >> 8) & 0xfff;
    const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    if (st.isCharDevice) rules.push(`c ${major}:${minor} ${perms}`);
    else if (st.isBlockDevice) rules.push(`b ${major}:${minor} ${perms}`);
  };
  for (const d of CLOSED_DEVICES) node(d, "rwm");
  for (const entry of unit.split("\n").filter((l) => l.startsWith("DeviceAllow="))) {
    const [what, perms = "rwm"] = entry.slice("DeviceAllow=".length).split(/\s+/);
    if (what.startsWith("char-")) {
      for (const major of charMajors(what.slice(5))) rules.push(`c ${major}:* ${perms}`);
    } else node(what, perms);
  }
  return rules;
}

function devicesSkipReason(): string | null {
  try {
    Deno.statSync(`${DEVICES_ROOT}/devices.allow`);
  } catch {
    return `no cgroup v1 devices controller at ${DEVICES_ROOT} (systemd uses BPF on cgroup v2)`;
  }
  return null;
}
const devSkip = fsSkip ?? devicesSkipReason();
if (devSkip && !fsSkip) console.log(`unit device policy emulation skipped: ${devSkip}`);

Deno.test("unit: devices: the host's /dev, closed policy, NVIDIA devices allowed", () => {
  assert.deepEqual(setting("PrivateDevices"), ["no"], "PrivateDevices=yes hides /dev/nvidia*");
  assert.deepEqual(setting("DevicePolicy"), ["closed"]);
  assert.deepEqual(setting("DeviceAllow"), [
    "char-nvidia-frontend rw",
    "char-nvidiactl rw",
    "char-nvidia-uvm rw",
    "char-nvidia-caps rw",
    "/dev/nvidiactl rw",
    "/dev/nvidia-uvm rw",
    "/dev/nvidia-uvm-tools rw",
    "/dev/nvidia-modeset rw",
  ]);
});

Deno.test({
  name:
    `unit: a sandboxed agent runs under an emulation of the unit's ProtectSystem=strict, PrivateTmp, DevicePolicy=closed + DeviceAllow, ProtectKernelTunables${
      devSkip ? ` (skipped: ${devSkip})` : ""
    }`,
  ignore: devSkip !== null,
  async fn() {
    const caps = setting("CapabilityBoundingSet")[0].split(/\s+/);
    const cgroup = `${DEVICES_ROOT}/clawcage-unit-test-${Deno.pid}`;
    Deno.mkdirSync(cgroup);
    try {
      Deno.writeTextFileSync(`${cgroup}/devices.deny`, "a");
      for (const rule of deviceRules(unitText)) {
        Deno.writeTextFileSync(`${cgroup}/devices.allow`, rule);
      }
      // The fixture joins the cgroup, exits 91 if /dev/kmsg can still be opened, and exits 90
      // unless /usr really is read-only around the service.
      const r = await runUnder(caps, true, cgroup);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /agent-ran\n65534\ndevices-ok\n/);
    } finally {
      Deno.removeSync(cgroup);
    }
  },
});
