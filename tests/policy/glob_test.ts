import assert from "node:assert/strict";
import fc from "fast-check";
import { compileGlob, GlobSyntaxError } from "../../core/policy/glob.ts";

const CASES: [string, "/" | ".", string, boolean][] = [
  ["/repos/*", "/", "/repos/a", true],
  ["/repos/*", "/", "/repos/a/b", false],
  ["/repos/**", "/", "/repos/a/b", true],
  ["/repos/**", "/", "/repos", false],
  ["/a/**/b", "/", "/a/x/y/b", true],
  ["/a/**/b", "/", "/a/b", false],
  ["/x/**secret**", "/", "/x/mysecretfile", true],
  ["/x/**secret**", "/", "/x/a/secret", false],
  ["/v?/x", "/", "/v1/x", true],
  ["/v?/x", "/", "/v//x", false],
  ["/v[0-9]/x", "/", "/v7/x", true],
  ["/v[!0-9]/x", "/", "/v7/x", false],
  ["/v[!0-9]/x", "/", "/vz/x", true],
  ["/v[!a]/x", "/", "/v//x", false],
  ["/a\\*b", "/", "/a*b", true],
  ["/a\\*b", "/", "/axb", false],
  ["*.example.com", ".", "api.example.com", true],
  ["*.example.com", ".", "a.b.example.com", false],
  ["**.example.com", ".", "a.b.example.com", true],
  ["**.example.com", ".", "example.com", false],
  ["*-api.example.com", ".", "eu-api.example.com", true],
  ["linux-*", ".", "linux-x64", true],
  ["1.*", ".", "1.2.3", false],
  ["**", ".", "1.2.3", true],
  ["/a.b", "/", "/aXb", false],
  ["/a(b|c)", "/", "/a(b|c)", true],
];

for (const [pattern, sep, value, expected] of CASES) {
  Deno.test(`glob: ${pattern} ${expected ? "matches" : "does not match"} ${value}`, () => {
    assert.equal(compileGlob(pattern, sep).test(value), expected);
  });
}

Deno.test("glob: syntax errors are reported", () => {
  for (
    const bad of ["/a[", "/a[]", "/a\\", "/[z-a]", "/" + "*/".repeat(17), "/" + "a".repeat(2000)]
  ) {
    assert.throws(() => compileGlob(bad, "/"), GlobSyntaxError, bad);
  }
});

Deno.test("glob: many stars on a long value stay fast", () => {
  const re = compileGlob("/" + "*a".repeat(15) + "b", "/");
  const t0 = performance.now();
  assert.equal(re.test("/" + "a".repeat(8000)), false);
  assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`);
});

Deno.test("glob: escaped stars are literal even as a whole segment", () => {
  assert.equal(compileGlob("/a/\\*\\*", "/").test("/a/**"), true);
  assert.equal(compileGlob("/a/\\*\\*/*", "/").test("/a/b/c"), false);
  assert.equal(compileGlob("/a/\\*\\*/*", "/").test("/a/**/c"), true);
});

Deno.test("glob: several ** segments", () => {
  const g = compileGlob("/**/x/**", "/");
  assert.equal(g.test("/a/x/b"), true);
  assert.equal(g.test("/a/b/x/c/d"), true);
  assert.equal(g.test("/x/b"), false);
  assert.equal(g.test("/a/x"), false);
});

/** The documented semantics as a (backtracking) RegExp: the oracle for the engine. */
function oracle(pattern: string): RegExp {
  const segs = pattern.split("/").map((seg) =>
    /^\*{2,}$/.test(seg)
      ? "\u0000"
      : seg.replace(/\*+/g, "\u0001").split("").map((c) =>
        c === "\u0001" ? "[^/]*" : c === "?" ? "[^/]" : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")
      ).join("")
  );
  return new RegExp(`^${segs.join("/").replaceAll("\u0000", ".+")}$`, "s");
}

Deno.test("glob: the engine agrees with the RegExp oracle on random patterns and values", () => {
  const piece = fc.constantFrom("a", "b", "/", "*", "**", "?");
  fc.assert(
    fc.property(
      fc.array(piece, { minLength: 1, maxLength: 8 }).map((p) => p.join("")),
      fc.array(fc.constantFrom("a", "b", "/", "ab"), { maxLength: 8 }).map((v) => v.join("")),
      (pattern, value) => {
        let g;
        try {
          g = compileGlob(pattern, "/");
        } catch {
          return; // more wildcards than allowed
        }
        assert.equal(g.test(value), oracle(pattern).test(value), `${pattern} vs ${value}`);
      },
    ),
    { numRuns: 3000, seed: 7 },
  );
});
