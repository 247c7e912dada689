// `clawcage doctor` says which device in-process models would use.

import assert from "node:assert/strict";
import { cli } from "../helpers/cli.ts";

Deno.test("doctor --json reports the llama.cpp device (GPU, or CPU with a warning)", async () => {
  const r = await cli(["doctor", "--json"]);
  const check = JSON.parse(r.stdout).checks.find((c: { name: string }) =>
    c.name === "local inference"
  );
  assert.ok(check, r.stdout);
  if (check.status === "ok") assert.match(check.detail, /^llama\.cpp on (CUDA|VULKAN|METAL) \(/);
  else {
    assert.equal(check.status, "warn");
    assert.match(check.detail, /^llama\.cpp on CPU \(no usable GPU found; \d+ cores for math\)/);
  }
});
