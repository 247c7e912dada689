// clawcage run as an unprivileged user (nobody, rootless): the PDP's runtime directory goes to
// $XDG_RUNTIME_DIR, and a runtime directory that cannot be made stops the run with one line.

import assert from "node:assert/strict";
import { selfCommand, systemProgram } from "../../core/self.ts";
import { hasSeccomp, isRoot, landlockAbi } from "../helpers/host.ts";

const setpriv = systemProgram("setpriv");
const skip = !isRoot
  ? "needs root to become nobody"
  : !setpriv
  ? "setpriv missing"
  : !hasSeccomp
  ? "libseccomp.so.2 missing"
  : landlockAbi === 0
  ? "rootless run needs Landlock"
  : null;
if (skip) console.log(`skipping unprivileged PDP tests: ${skip}`);

async function asNobody(args: string[], env: Record<string, string>) {
  const argv = selfCommand(args);
  const out = await new Deno.Command(setpriv!, {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", ...argv],
    env,
    clearEnv: true,
    cwd: env.HOME,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: "unprivileged run: PDP socket under $XDG_RUNTIME_DIR; no runtime dir, no run",
  ignore: skip !== null,
  async fn() {
    const home = await Deno.makeTempDir({ dir: "/var/tmp" });
    await Deno.chmod(home, 0o755);
    await Deno.mkdir(`${home}/xdg`, { mode: 0o700 });
    await Deno.mkdir(`${home}/work`);
    for (const p of [home, `${home}/xdg`, `${home}/work`]) await Deno.chown(p, 65534, 65534);
    const env = { HOME: home, DENO_DIR: `${home}/deno`, XDG_RUNTIME_DIR: `${home}/xdg` };
    try {
      // The agent (same user, no mount namespace) tries to list the runtime directory's
      // parent: the policy does not grant it (the workdir is elsewhere), so Landlock says no.
      const ok = await asNobody([
        "run",
        "-q",
        "--rootless",
        "-w",
        `${home}/work`,
        "--",
        "/bin/sh",
        "-c",
        `ls ${home}/xdg/clawcage-65534 >/dev/null 2>&1 && echo listed || echo hidden`,
      ], env);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout.trim(), "hidden");
      // Removed after the run.
      assert.deepEqual([...Deno.readDirSync(`${home}/xdg/clawcage-65534`)], []);

      const bad = await asNobody([
        "run",
        "-q",
        "--rootless",
        "--no-audit",
        "-w",
        `${home}/work`,
        "--",
        "/bin/true",
      ], {
        ...env,
        XDG_RUNTIME_DIR: "/proc/clawcage-none",
      });
      assert.equal(bad.code, 125, bad.stderr);
      assert.match(
        bad.stderr,
        // The PDP's or the egress proxy's runtime directory, whichever is made first.
        /^clawcage: [^\n]*runtime director[^\n]*\/proc\/clawcage-none[^\n]*\n$/,
      );
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  },
});
