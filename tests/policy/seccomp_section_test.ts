// The policy's seccomp section: schema, the filter it adds to, and enforcement on a real
// sandboxed process.

import assert from "node:assert/strict";
import { parsePolicy } from "../../core/policy/load.ts";
import { agentFilter, DENIED_SYSCALLS } from "../../core/sandbox/seccomp_profile.ts";
import { cli } from "../helpers/cli.ts";
import { sandboxSkipReason } from "../helpers/host.ts";
import { problems } from "./helpers.ts";

const DEFAULT = Deno.readTextFileSync(new URL("../../policies/default.yaml", import.meta.url));

Deno.test("seccomp section: deny_syscalls is parsed and added to the agent's filter", () => {
  const p = parsePolicy("version: 1\nseccomp:\n  deny_syscalls: [uname, personality]\n", "p.yaml");
  assert.deepEqual(p.seccomp?.deny_syscalls, ["uname", "personality"]);
  const base = agentFilter();
  const f = agentFilter(p.seccomp!.deny_syscalls);
  assert.equal(f.rules.length, base.rules.length + 2);
  for (const name of ["uname", "personality"]) {
    assert.ok(f.rules.some((r) => r.syscall === name && typeof r.action === "object"));
  }
  // Names already in the built-in list are not added twice.
  assert.equal(agentFilter([DENIED_SYSCALLS[0]]).rules.length, base.rules.length);
});

Deno.test("seccomp section: bad names and syscalls the stage needs are refused with positions", () => {
  assert.match(
    problems("version: 1\nseccomp:\n  deny_syscalls: [Uname]\n")[0],
    /^p\.yaml:3:19: seccomp\.deny_syscalls\.0: a system call name is lower-case/,
  );
  assert.match(
    problems("version: 1\nseccomp:\n  deny_syscalls: [uname, execve]\n")[0],
    /^p\.yaml:3:26: .*would stop the sandbox from starting the agent/,
  );
  assert.match(
    problems("version: 1\nseccomp:\n  deny_syscall: [uname]\n")[0],
    /^p\.yaml:3:3: unknown key "deny_syscall" in seccomp \(did you mean "deny_syscalls"\?\)/,
  );
});

const skip = sandboxSkipReason();

async function runWith(policyText: string, script: string) {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(path, policyText);
  try {
    return await cli(["run", "-q", "--policy", path, "-w", "/tmp", "--", "/bin/sh", "-c", script]);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test({
  name: `seccomp section: a denied syscall fails with EPERM in the real sandbox${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== null,
  fn: async () => {
    const script = "uname -s; echo rc=$?";
    const plain = await runWith(DEFAULT, script);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^Linux\nrc=0\n$/, "control: uname works without the section");
    const denied = await runWith(`${DEFAULT}\nseccomp:\n  deny_syscalls: [uname]\n`, script);
    assert.equal(denied.code, 0, denied.stderr);
    assert.match(denied.stdout, /rc=1/);
    assert.match(denied.stderr, /Operation not permitted/);
  },
});

Deno.test({
  name: `seccomp section: an unknown system call stops the run with one line${
    skip ? ` (skipped: ${skip})` : ""
  }`,
  ignore: skip !== null,
  fn: async () => {
    const r = await runWith(`${DEFAULT}\nseccomp:\n  deny_syscalls: [no_such_call]\n`, "true");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr.trim(), /seccomp\.deny_syscalls: no_such_call is not a system call/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  },
});
