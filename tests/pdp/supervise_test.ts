// startRunPdp (what `clawcage run` uses): the private runtime directory, events on the log and
// in a real audit log, reload from the policy file.

import assert from "node:assert/strict";
import { eventType } from "../../core/audit/events.ts";
import { readRecords } from "../../core/audit/read.ts";
import { AuditLog } from "../../core/audit/writer.ts";
import { startRunPdp } from "../../core/pdp/supervise.ts";
import { hasSeccomp } from "../helpers/host.ts";
import { policyYaml } from "./helpers.ts";

const ignore = !hasSeccomp;

async function until(what: string, cond: () => boolean, ms = 30_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test(
  { name: "startRunPdp: runtime dir, stderr lines and audit records", ignore },
  async () => {
    const root = await Deno.makeTempDir({ prefix: "pdp-supervise-" });
    const policyFile = `${root}/policy.yaml`;
    await Deno.writeTextFile(policyFile, policyYaml(["example.org"]));
    const audit = await AuditLog.open(`${root}/log`, { keyDir: `${root}/key`, fsync: "none" });
    const lines: string[] = [];
    const pdp = await startRunPdp({
      policyFile,
      sandbox: "test-sandbox",
      audit,
      log: (l) => lines.push(l),
    });
    try {
      const info = Deno.statSync(pdp.runtimeDir);
      assert.equal(info.mode! & 0o777, 0o700);
      if (Deno.uid() === 0) assert.ok(pdp.runtimeDir.startsWith("/run/clawcage/"));
      // Named after the sandbox, beside the egress proxy's directory of the same run.
      assert.match(pdp.runtimeDir, /\/test-sandbox\.pdp-[0-9a-f]{8}$/);
      const ask = () =>
        pdp.client.decide({ binary: "/usr/bin/curl", host: "example.net", port: 443 });
      assert.equal((await ask()).verdict, "deny");

      await Deno.writeTextFile(policyFile, policyYaml(["example.net"]));
      const reloaded = await pdp.reloadFromFile();
      assert.equal(reloaded.ok, true, JSON.stringify(reloaded));
      assert.equal((await ask()).verdict, "allow");
      await Deno.writeTextFile(policyFile, "version: 1\nnetwork_policies: [\n");
      assert.equal((await pdp.reloadFromFile()).ok, false);

      const pid = pdp.client.pid!;
      Deno.kill(pid, "SIGKILL");
      await until("the restart", () => pdp.client.pid !== null && pdp.client.pid !== pid);
      assert.equal((await ask()).verdict, "allow", "restarted on the reloaded policy");
    } finally {
      await pdp.close();
    }
    assert.throws(() => Deno.statSync(pdp.runtimeDir), "runtime dir removed");
    await audit.close();

    assert.match(
      lines.join("\n"),
      /policy reloaded from .*policy\.yaml \(changed: network_policies\)/,
    );
    assert.match(lines.join("\n"), /policy reload refused: .*policy\.yaml:\d+:\d+: invalid YAML/);
    assert.match(lines.join("\n"), /policy-decision process failed: .*every decision is deny/);
    assert.match(lines.join("\n"), /policy-decision process restarted \(pid \d+\)/);

    const events = [...readRecords(`${root}/log`)].map((r) => r.record.event)
      .filter((e) => e.class !== "audit");
    const types = events.map(eventType);
    assert.deepEqual(types, [
      "process.launch",
      "config.reload",
      "config.reject",
      "process.terminate",
      "process.launch",
    ]);
    assert.ok(events.every((e) => "sandbox" in e && e.sandbox === "test-sandbox"));
    await Deno.remove(root, { recursive: true });
  },
);
