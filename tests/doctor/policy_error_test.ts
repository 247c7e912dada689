// `clawcage doctor --json --policy FILE` with a bad policy: still JSON on stdout (the problem with
// file:line:column), the same one line on stderr and exit 2 as without --json.

import assert from "node:assert/strict";
import { join } from "node:path";
import { cli } from "../helpers/cli.ts";

Deno.test("doctor --json: a policy error is JSON with file:line:column and exit 2", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "clawcage-doctor-" });
  try {
    const bad = join(dir, "bad.yaml");
    Deno.writeTextFileSync(bad, "version: 1\nfilesystem_policy:\n  read_only: 5\n");
    const plain = await cli(["doctor", "--policy", bad]);
    assert.equal(plain.code, 2, plain.stdout + plain.stderr);
    assert.match(plain.stderr, new RegExp(`^clawcage: ${bad}:3:14: filesystem_policy\\.read_only`));

    const r = await cli(["doctor", "--json", "--policy", bad]);
    assert.equal(r.code, plain.code, r.stderr);
    assert.equal(r.stderr, plain.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.ok, false);
    assert.equal(out.policy, bad);
    assert.match(out.error, new RegExp(`^${bad}:3:14: filesystem_policy\\.read_only: `));
    assert.deepEqual(
      out.problems.map((p: { file: string; line: number; column: number }) => [
        p.file,
        p.line,
        p.column,
      ]),
      [[bad, 3, 14]],
    );

    const missing = await cli(["doctor", "--json", "--policy", join(dir, "none.yaml")]);
    assert.equal(missing.code, 2, missing.stderr);
    const m = JSON.parse(missing.stdout);
    assert.equal(m.ok, false);
    assert.match(m.error, /none\.yaml:0:0: cannot read policy: no such file$/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
