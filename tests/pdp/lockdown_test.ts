// The PDP's lockdown (core/pdp/lockdown.ts) applied to a real process on the real kernel: a
// fixture locks itself down exactly as `clawcage __pdp` does, then tries to read and write
// files, list directories, start programs, open sockets and ptrace.

import assert from "node:assert/strict";
import { hasSeccomp, landlockAbi } from "../helpers/host.ts";

const FIXTURE = new URL("./fixtures/locked.ts", import.meta.url).pathname;

interface Outcome {
  // deno-lint-ignore no-explicit-any
  lines: Record<string, any>[];
  code: number;
  signal: Deno.Signal | null;
}

async function runLocked(
  mode: "full" | "landlock",
  attempts: string[],
  env: Record<string, string> = {},
): Promise<Outcome> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--no-prompt",
      "--quiet",
      "--no-code-cache",
      FIXTURE,
      mode,
      ...attempts,
    ],
    env: { DENO_NO_UPDATE_CHECK: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).map((l) =>
    JSON.parse(l)
  );
  return { lines, code: out.code, signal: out.signal };
}

const noSeccomp = !hasSeccomp;
if (noSeccomp) console.log("skipping seccomp lockdown tests: libseccomp.so.2 missing");
const noLandlock = landlockAbi < 1;
if (noLandlock) console.log("skipping Landlock lockdown test: kernel has no Landlock");

Deno.test({
  name: "locked-down PDP cannot open, write or list files, nor start programs",
  ignore: noSeccomp,
  async fn() {
    const r = await runLocked("full", ["read", "write", "readdir", "exec"]);
    assert.equal(r.code, 0, JSON.stringify(r));
    const byName = Object.fromEntries(r.lines.slice(1).map((l) => [l.name, l]));
    for (const name of ["read", "write", "readdir", "exec"]) {
      assert.equal(byName[name]?.ok, false, `${name}: ${JSON.stringify(byName[name])}`);
      assert.equal(byName[name]?.error, "PermissionDenied", name);
    }
  },
});

for (const attempt of ["tcp", "unix", "listen", "ptrace"]) {
  Deno.test({
    name: `locked-down PDP is killed (SIGSYS) when it tries ${attempt}`,
    ignore: noSeccomp,
    async fn() {
      const r = await runLocked("full", [attempt]);
      assert.ok(r.lines[0]?.ready, "the fixture locked itself down");
      assert.equal(r.lines.length, 1, `nothing after the attempt: ${JSON.stringify(r.lines)}`);
      assert.equal(r.signal, "SIGSYS");
    },
  });
}

Deno.test({
  name: "Landlock step alone: no file access at all, no signals outside its domain",
  ignore: noLandlock,
  async fn() {
    const attempts = ["read", "write", "readdir", ...(landlockAbi >= 6 ? ["signal-parent"] : [])];
    const r = await runLocked("landlock", attempts);
    assert.equal(r.code, 0, JSON.stringify(r));
    const byName = Object.fromEntries(r.lines.slice(1).map((l) => [l.name, l]));
    for (const name of ["read", "write", "readdir"]) {
      assert.equal(byName[name]?.code, "EACCES", `${name}: ${JSON.stringify(byName[name])}`);
    }
    if (landlockAbi >= 6) assert.equal(byName["signal-parent"]?.code, "errno 1");
  },
});

Deno.test({
  name: "jitless PDP: executable memory refused; with a JIT the filter allows it",
  ignore: noSeccomp,
  async fn() {
    const jitless = await runLocked("full", ["exec-memory"], { DENO_V8_FLAGS: "--jitless" });
    assert.equal(jitless.code, 0, JSON.stringify(jitless));
    assert.equal(jitless.lines[0].lockdown?.noExecMemory, true);
    assert.equal(jitless.lines.at(-1)?.code, "errno 1", JSON.stringify(jitless.lines));
    const jit = await runLocked("full", ["exec-memory"]);
    assert.equal(jit.lines[0].lockdown?.noExecMemory, false);
    assert.equal(jit.lines.at(-1)?.ok, true, JSON.stringify(jit.lines));
  },
});
