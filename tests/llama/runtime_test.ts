// The llama.cpp runtime leaves the process's signals to clawcage: node-llama-cpp's dependencies
// load npm's signal-exit, which re-sends SIGTERM/SIGINT/SIGHUP to the process (so that `clawcage
// router` sometimes exited 143 on SIGTERM); loading the runtime removes those listeners again.
// Checked in a fresh process: other test files import node-llama-cpp statically.

import assert from "node:assert/strict";

Deno.test("loading the llama.cpp runtime leaves no signal-exit listeners behind", async () => {
  const runtime = new URL("../../router/backends/llama_runtime.ts", import.meta.url).href;
  const script = `
    import process from "node:process";
    const { loadRuntime } = await import(${JSON.stringify(runtime)});
    await loadRuntime();
    console.log(JSON.stringify(["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR2"].map(
      (s) => process.listeners(s).length,
    )));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    cwd: new URL("../..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), [0, 0, 0, 0, 0]);
});
