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

const FS_HARDENING = new URL("./fixtures/unit_fs_hardening.sh", import.meta.url).pathname;

/**
 * Runs a sandboxed agent with no_new_privs and only the capabilities in `caps`; with
 * `fsHardening`, inside the emulation of the unit's filesystem options.
 */
async function runUnder(
  caps: string[],
  fsHardening = false,
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
    ...selfCommand(["run", "--", "sh", "-c", "echo agent-ran; id -u"]),
  ];
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
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

Deno.test({
  name:
    `unit: a sandboxed agent runs under an emulation of the unit's ProtectSystem=strict, PrivateTmp, PrivateDevices, ProtectKernelTunables${
      fsSkip ? ` (skipped: ${fsSkip})` : ""
    }`,
  ignore: fsSkip !== null,
  async fn() {
    const caps = setting("CapabilityBoundingSet")[0].split(/\s+/);
    // The fixture exits 90 unless /usr really is read-only around the service.
    const r = await runUnder(caps, true);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /agent-ran\n65534\n/);
  },
});
