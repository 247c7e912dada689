// doctor and run as an unprivileged user (nobody), started from root with setpriv(1).

import assert from "node:assert/strict";
import { selfCommand, systemProgram } from "../../core/self.ts";
import { isRoot, landlockAbi } from "../helpers/host.ts";

const setpriv = systemProgram("setpriv");
/** The source tree must be readable by nobody for Deno to load it. */
function readableByNobody(): boolean {
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const r = new Deno.Command(setpriv!, {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", main],
  }).outputSync();
  return r.success;
}
const skip = !isRoot
  ? "needs root to become nobody"
  : !setpriv
  ? "setpriv missing"
  : !readableByNobody()
  ? "the checkout is not readable by nobody"
  : null;

async function asNobody(args: string[]) {
  // Not under /tmp, which the default policy grants (rootless, the real /tmp): the audit trail
  // goes to $HOME/.local/state, which a rootless run refuses to leave inside a granted path;
  // likewise the working directory is a project directory below $HOME, not $HOME.
  const home = await Deno.makeTempDir({ dir: "/var/tmp" });
  await Deno.chown(home, 65534, 65534);
  const work = `${home}/work`;
  await Deno.mkdir(work);
  await Deno.chown(work, 65534, 65534);
  const argv = selfCommand(args);
  const out = await new Deno.Command(setpriv!, {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", ...argv],
    env: { DENO_DIR: `${home}/deno`, HOME: home },
    clearEnv: true,
    cwd: work,
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(home, { recursive: true });
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: `unprivileged: doctor says namespaces need root${skip ? ` (skipped: ${skip})` : ""}`,
  ignore: skip !== null,
  async fn() {
    const r = await asNobody(["doctor", "--json"]);
    const report = JSON.parse(r.stdout);
    const ns = report.checks.find((c: { name: string }) => c.name === "namespaces");
    assert.equal(ns.status, "warn");
    assert.match(ns.detail, /not root/);
    if (landlockAbi > 0) assert.match(report.summary, /rootless sandbox available/);
  },
});

Deno.test({
  name: `unprivileged: run refuses without --rootless and works with it${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== null || landlockAbi === 0,
  async fn() {
    const refused = await asNobody(["run", "--", "/bin/true"]);
    assert.equal(refused.code, 125);
    assert.equal(
      refused.stderr.trim(),
      "clawcage: namespaces need root (CAP_SYS_ADMIN); run as root, or pass --rootless to run with Landlock + seccomp only",
    );
    const ok = await asNobody([
      "run",
      "--rootless",
      "--",
      "/bin/sh",
      "-c",
      "cat /etc/shadow; echo done",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /namespaces\(off: rootless\)/);
    assert.equal(ok.stdout.trim(), "done");
  },
});
