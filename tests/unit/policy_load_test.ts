import assert from "node:assert/strict";
import { formatProblem, parsePolicy, PolicyError } from "../../core/policy/load.ts";

function problems(yaml: string): string[] {
  try {
    parsePolicy(yaml, "p.yaml");
  } catch (e) {
    if (e instanceof PolicyError) return e.problems.map(formatProblem);
    throw e;
  }
  assert.fail("policy was accepted");
}

Deno.test("policy: the embedded default policy loads", async () => {
  const text = await Deno.readTextFile(new URL("../../policies/default.yaml", import.meta.url));
  const p = parsePolicy(text, "default.yaml");
  assert.equal(p.process.run_as_user, "nobody");
  assert.ok(p.filesystem_policy.read_only.includes("/usr"));
  assert.equal(p.landlock.compatibility, "best_effort");
});

Deno.test("policy: defaults for omitted sections", () => {
  const p = parsePolicy("version: 1\n", "p.yaml");
  assert.equal(p.filesystem_policy.include_workdir, true);
  assert.deepEqual(p.filesystem_policy.read_write, []);
  assert.equal(p.landlock.compatibility, "best_effort");
});

Deno.test("policy: a misspelt key points at its line and column and suggests the right one", () => {
  const out = problems("version: 1\nfilesystem_policy:\n  read_onyl: [/usr]\n");
  assert.equal(out.length, 1);
  assert.match(
    out[0],
    /^p\.yaml:3:3: unknown key "read_onyl" in filesystem_policy \(did you mean "read_only"\?\)/,
  );
});

Deno.test("policy: an unknown top-level key lists what is expected", () => {
  const [line] = problems("version: 1\nbogus_section: {}\n");
  assert.match(line, /^p\.yaml:2:1: unknown key "bogus_section"/);
});

Deno.test("policy: relative paths, '..' and a read-write / are refused with positions", () => {
  const out = problems(
    "version: 1\nfilesystem_policy:\n  read_only:\n    - usr\n    - /a/../etc\n  read_write: [/]\n",
  );
  assert.equal(out.length, 3);
  assert.match(out[0], /^p\.yaml:4:7: .*path must be absolute/);
  assert.match(out[1], /^p\.yaml:5:7: .*must not contain "\.\."/);
  assert.match(out[2], /^p\.yaml:6:16: .*must not include \//);
});

Deno.test("policy: wrong version, wrong enum and wrong type", () => {
  assert.match(problems("version: 2\n")[0], /^p\.yaml:1:10: version: must be 1/);
  assert.match(
    problems("version: 1\nlandlock:\n  compatibility: strict\n")[0],
    /^p\.yaml:3:18: landlock\.compatibility: expected one of "best_effort", "hard_requirement"/,
  );
  assert.match(
    problems("version: 1\nfilesystem_policy:\n  include_workdir: yes please\n")[0],
    /^p\.yaml:3:20: /,
  );
});

Deno.test("policy: missing version is reported", () => {
  assert.match(problems("process:\n  run_as_user: nobody\n")[0], /missing required key "version"/);
});

Deno.test("policy: invalid YAML and duplicate keys report their position", () => {
  assert.match(problems("version: 1\nprocess: [unclosed\n")[0], /^p\.yaml:\d+:\d+: invalid YAML/);
  assert.match(
    problems("version: 1\nversion: 1\n")[0],
    /^p\.yaml:2:1: invalid YAML: Map keys must be unique/,
  );
});

Deno.test("policy: empty, oversized and deeply nested documents are refused quickly", () => {
  assert.match(problems("")[0], /policy is empty/);
  assert.match(problems("# x\n".repeat(300_000))[0], /larger than/);
  const deep = "version: 1\nx: " + "[".repeat(200) + "]".repeat(200) + "\n";
  const started = performance.now();
  assert.match(problems(deep)[0], /nesting deeper than/);
  assert.ok(performance.now() - started < 2000);
});

Deno.test("policy: alias bombs are refused", () => {
  const bomb = ["version: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 0; i < 8; i++) {
    bomb.push(
      `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${
        Array(10).fill("*" + String.fromCharCode(97 + i)).join(", ")
      }]`,
    );
  }
  assert.match(problems(bomb.join("\n") + "\n")[0], /p\.yaml:1:1: invalid YAML/);
});
