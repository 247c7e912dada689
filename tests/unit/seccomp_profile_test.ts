import assert from "node:assert/strict";
import { agentFilter, DENIED_SYSCALLS } from "../../core/sandbox/seccomp_profile.ts";
import { resolveSyscall } from "../../ffi/seccomp.ts";
import { hasSeccomp } from "../helpers/host.ts";

/** Syscalls that legitimately do not exist on some architectures. */
const ARCH_SPECIFIC = new Set(["iopl", "ioperm"]);

Deno.test({
  name: `seccomp profile: every denied syscall exists on ${Deno.build.arch}${
    hasSeccomp ? "" : " (skipped: no libseccomp)"
  }`,
  ignore: !hasSeccomp,
  fn() {
    const missing = DENIED_SYSCALLS.filter((s) =>
      resolveSyscall(s) === null && !ARCH_SPECIFIC.has(s)
    );
    assert.deepEqual(missing, []);
  },
});

Deno.test("seccomp profile: denies with EPERM (clone3 with ENOSYS), never kills", () => {
  const f = agentFilter();
  assert.equal(f.defaultAction, "allow");
  assert.equal(f.tsync, true);
  for (const r of f.rules) {
    assert.deepEqual(r.action, { errno: r.syscall === "clone3" ? 38 : 1 }, r.syscall);
  }
  const socketRules = f.rules.filter((r) => r.syscall === "socket");
  // AF_PACKET (17) is denied outright; AF_UNIX (1) never is.
  assert.ok(
    socketRules.some((r) =>
      r.args?.length === 1 && r.args[0].op === "EQ" && r.args[0].value === 17n
    ),
  );
  assert.ok(
    !socketRules.some((r) => r.args?.length === 1 && r.args[0].arg === 0 && r.args[0].value === 1n),
  );
});
