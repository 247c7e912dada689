// Pseudonymisation and the streaming restorer, with entities given explicitly.

import assert from "node:assert/strict";
import { Pseudonymiser } from "../../router/pseudonymise.ts";
import type { Entity, EntityType } from "../../router/pii/types.ts";

function at(text: string, value: string, type: EntityType): Entity {
  const start = text.indexOf(value);
  assert.ok(start >= 0, value);
  return { type, start, end: start + value.length, score: 0.9 };
}

Deno.test("placeholders are numbered by first appearance and reused for the same value", () => {
  const ps = new Pseudonymiser();
  const a = "Ann Lee met Bob Ray.";
  const b = "Later Bob Ray called Ann Lee at ann@x.org.";
  const outA = ps.replace(a, [at(a, "Ann Lee", "PERSON"), at(a, "Bob Ray", "PERSON")]);
  const outB = ps.replace(b, [
    at(b, "Bob Ray", "PERSON"),
    at(b, "Ann Lee", "PERSON"),
    at(b, "ann@x.org", "EMAIL_ADDRESS"),
  ]);
  assert.equal(outA, "<PERSON_1> met <PERSON_2>.");
  assert.equal(outB, "Later <PERSON_2> called <PERSON_1> at <EMAIL_ADDRESS_1>.");
  assert.deepEqual(ps.counts, { PERSON: 4, EMAIL_ADDRESS: 1 });
  assert.equal(ps.restore(outB), b);
});

Deno.test("a placeholder the client wrote itself is never reused", () => {
  const ps = new Pseudonymiser();
  const t = "Ann Lee wrote <PERSON_1> in her note.";
  ps.reserve(t);
  const out = ps.replace(t, [at(t, "Ann Lee", "PERSON")]);
  assert.equal(out, "<PERSON_2> wrote <PERSON_1> in her note.");
  assert.equal(ps.restore(out), t);
});

Deno.test("restoring into JSON text escapes the value and accepts \\u003c forms", () => {
  const ps = new Pseudonymiser();
  const t = 'Name: Jo "JJ" O\\Neil';
  ps.replace(t, [at(t, 'Jo "JJ" O\\Neil', "PERSON")]);
  const args = JSON.stringify({ a: "<PERSON_1>" }).replace("<", "\\u003c").replace(">", "\\u003e");
  assert.deepEqual(JSON.parse(ps.restoreJson(args)), { a: 'Jo "JJ" O\\Neil' });
  assert.deepEqual(ps.restoreDeep({ f: { arguments: '{"n":"<PERSON_1>"}' }, t: "<PERSON_1>" }), {
    f: { arguments: JSON.stringify({ n: 'Jo "JJ" O\\Neil' }) },
    t: 'Jo "JJ" O\\Neil',
  });
  assert.equal(ps.restore("<PERSON_9> stays"), "<PERSON_9> stays");
});

Deno.test("streamed text is restored wherever the pieces are cut", () => {
  const ps = new Pseudonymiser();
  const src = "Ann Lee, ann@x.org";
  ps.replace(src, [at(src, "Ann Lee", "PERSON"), at(src, "ann@x.org", "EMAIL_ADDRESS")]);
  const cases: [string, boolean][] = [
    ["Hi <PERSON_1>, mail <EMAIL_ADDRESS_1> < 3 <b> <PERSON_12> <PERSON_1", false],
    ['{"to":"<EMAIL_ADDRESS_1>","n":"\\u003cPERSON_1\\u003e","x":"\\n<"}', true],
  ];
  for (const [text, json] of cases) {
    const whole = json ? ps.restoreJson(text) : ps.restore(text);
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j += 3) {
        const r = ps.streamRestorer(json);
        const out = r.push(text.slice(0, i)) + r.push(text.slice(i, j)) + r.push(text.slice(j)) +
          r.flush();
        assert.equal(out, whole, `cut at ${i}, ${j}`);
      }
    }
    // One character at a time.
    const r = ps.streamRestorer(json);
    assert.equal([...text].map((c) => r.push(c)).join("") + r.flush(), whole);
  }
});

Deno.test("the restorer holds back only what may be a placeholder", () => {
  const ps = new Pseudonymiser();
  ps.replace("Ann", [{ type: "PERSON", start: 0, end: 3, score: 1 }]);
  const r = ps.streamRestorer(false);
  assert.equal(r.push("a < b and <PER"), "a < b and ");
  assert.equal(r.pending, "<PER");
  assert.equal(r.push("SON_1> ok <html"), "Ann ok <html");
  assert.equal(r.push("x"), "x");
});
