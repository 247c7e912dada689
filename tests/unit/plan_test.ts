import assert from "node:assert/strict";
import { parsePolicy } from "../../core/policy/load.ts";
import { buildPlan, type HostView, PlanError } from "../../core/sandbox/plan.ts";

const existing = new Set(["/usr", "/etc", "/tmp", "/work", "/dev/null", "/run", "/etc/shadow"]);
function host(over: Partial<HostView> = {}): HostView {
  return {
    isRoot: true,
    uid: 0,
    gid: 0,
    userName: "root",
    passwd:
      "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    group: "root:x:0:\nnogroup:x:65534:\nagents:x:5000:\n",
    env: { TERM: "xterm", SECRET_TOKEN: "s3cr3t", LANG: "C.UTF-8" },
    kind: (
      p,
    ) => (existing.has(p) ? (p.includes("null") || p.includes("shadow") ? "file" : "dir") : null),
    stdinIsTerminal: false,
    which: (p) => `/usr/bin/${p}`,
    ...over,
  };
}
const policy = (yaml: string) => parsePolicy(`version: 1\n${yaml}`, "t.yaml");
const opts = { argv: ["agent"], workdir: "/work", env: [], rootless: false };

Deno.test("plan: grants only existing paths, adds the workdir, masks host secrets", () => {
  const plan = buildPlan(
    policy(
      "filesystem_policy:\n  include_workdir: true\n  read_only: [/usr, /etc/, /missing]\n  read_write: [/tmp]\nprocess:\n  run_as_user: nobody\n",
    ),
    opts,
    host(),
  );
  assert.deepEqual(plan.readOnly, ["/usr", "/etc"]);
  assert.deepEqual(plan.readWrite, ["/tmp", "/work"]);
  assert.equal(plan.namespaces, true);
  assert.deepEqual(plan.user, { name: "nobody", uid: 65534, gid: 65534, groups: [65534] });
  assert.deepEqual(plan.maskedFiles, ["/etc/shadow"]);
  assert.deepEqual(plan.privateDirs, ["/tmp", "/run"]);
  assert.equal(plan.pdeathsigHelper, null);
});

Deno.test("plan: refuses to run the agent as root unless the policy says so", () => {
  assert.throws(() => buildPlan(policy(""), opts, host()), PlanError);
  const plan = buildPlan(policy("process:\n  run_as_user: root\n"), opts, host());
  assert.equal(plan.user.uid, 0);
});

Deno.test("plan: run_as_group by name, unknown users and groups are errors", () => {
  const plan = buildPlan(
    policy("process:\n  run_as_user: nobody\n  run_as_group: agents\n"),
    opts,
    host(),
  );
  assert.equal(plan.user.gid, 5000);
  assert.throws(
    () => buildPlan(policy("process:\n  run_as_user: ghost\n"), opts, host()),
    /user "ghost" does not exist/,
  );
  assert.throws(
    () =>
      buildPlan(policy("process:\n  run_as_user: nobody\n  run_as_group: ghosts\n"), opts, host()),
    /group "ghosts" does not exist/,
  );
});

Deno.test("plan: the agent's environment is minimal; --env sets or passes through", () => {
  const plan = buildPlan(
    policy("process:\n  run_as_user: nobody\n"),
    { ...opts, env: ["FOO=bar", "SECRET_TOKEN", "ABSENT"] },
    host(),
  );
  assert.equal(plan.env.FOO, "bar");
  assert.equal(plan.env.SECRET_TOKEN, "s3cr3t");
  assert.equal(plan.env.TERM, "xterm");
  assert.equal(plan.env.HOME, "/work");
  assert.equal("ABSENT" in plan.env, false);
  const bare = buildPlan(policy("process:\n  run_as_user: nobody\n"), opts, host());
  assert.equal("SECRET_TOKEN" in bare.env, false);
  assert.throws(
    () =>
      buildPlan(policy("process:\n  run_as_user: nobody\n"), { ...opts, env: ["1X=y"] }, host()),
    /invalid variable/,
  );
});

Deno.test("plan: rootless keeps the invoking user, no namespaces, and a parent-death helper", () => {
  const h = host({ isRoot: false, uid: 1000, gid: 1000, userName: "dev" });
  const plan = buildPlan(
    policy("process:\n  run_as_user: nobody\n"),
    { ...opts, rootless: true },
    h,
  );
  assert.equal(plan.namespaces, false);
  assert.equal(plan.user.uid, 1000);
  assert.deepEqual(plan.privateDirs, []);
  assert.equal(plan.pdeathsigHelper, "/usr/bin/setpriv");
  assert.throws(
    () =>
      buildPlan(
        policy("landlock:\n  compatibility: hard_requirement\nprocess:\n  run_as_user: nobody\n"),
        { ...opts, rootless: true },
        h,
      ),
    /needs root to switch users/,
  );
});

Deno.test("plan: no command and a missing workdir are errors", () => {
  assert.throws(
    () => buildPlan(policy("process:\n  run_as_user: nobody\n"), { ...opts, argv: [] }, host()),
    /no command/,
  );
  assert.throws(
    () =>
      buildPlan(
        policy("process:\n  run_as_user: nobody\n"),
        { ...opts, workdir: "/nowhere" },
        host(),
      ),
    /does not exist/,
  );
});
