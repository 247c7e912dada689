// Kernel Landlock denials read over audit netlink become file events (root, Landlock ABI 7).

import assert from "node:assert/strict";
import { auditFields, LandlockDenialReader } from "../../core/audit/landlock_denials.ts";
import type { FileActivity } from "../../core/audit/events.ts";
import { abiVersion } from "../../ffi/landlock.ts";

function landlockAbi(): number {
  try {
    return abiVersion();
  } catch {
    return 0;
  }
}
const ok = Deno.uid() === 0 && landlockAbi() >= 7;

Deno.test("audit landlock: audit record fields parse (quoted and plain values)", () => {
  const f = auditFields(
    'audit(1795550919.646:4): domain=152b94aa7 blockers=fs.read_file path="/etc/hostname" dev="vda" ino=612',
  );
  assert.equal(f.get("domain"), "152b94aa7");
  assert.equal(f.get("blockers"), "fs.read_file");
  assert.equal(f.get("path"), "/etc/hostname");
  assert.equal(f.get("ino"), "612");
});

Deno.test({
  name: "audit landlock: a denied read in a Landlock domain arrives as a file event with the " +
    "sandbox's identity" + (ok ? "" : " (ignored: needs root and Landlock ABI 7)"),
  ignore: !ok,
  async fn() {
    const secret = Deno.makeTempFileSync({ prefix: "clawcage-denial-" });
    const events: FileActivity[] = [];
    let creator = -1;
    const reader = await LandlockDenialReader.start({
      onDenial: (e) => events.push(e),
      sandboxForPid: (pid) => (pid === creator ? "sb-test" : undefined),
      enableAudit: true,
      pollMs: 20,
    });
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "--quiet",
          new URL("./fixtures/landlock_child.ts", import.meta.url).pathname,
          secret,
        ],
        stdout: "piped",
      }).spawn();
      creator = child.pid;
      const out = JSON.parse(new TextDecoder().decode((await child.output()).stdout));
      assert.notEqual(out.catExit, 0, "cat must be denied");
      for (let i = 0; i < 50 && !events.some((e) => e.file.path === secret); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await reader.stop();
      Deno.removeSync(secret);
    }
    const hit = events.find((e) => e.file.path === secret);
    assert.ok(
      hit,
      `no denial for ${secret}; got ${JSON.stringify(events.map((e) => e.file.path))}`,
    );
    assert.equal(hit.activity, "read");
    assert.equal(hit.decision, "deny");
    assert.deepEqual(hit.file.access, ["fs.read_file"]);
    assert.equal(hit.actor?.exe, "/usr/bin/cat");
    assert.equal(hit.sandbox, "sb-test");
  },
});
