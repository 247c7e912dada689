// `clawcage pii` run as a subprocess: scan (text, --json, --jsonl), redact, bad input.

import assert from "node:assert/strict";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function cli(args: string[], input: string | Uint8Array) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--no-prompt", MAIN, "pii", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(typeof input === "string" ? new TextEncoder().encode(input) : input);
  await w.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const TEXT = "Patient Maria Gonzalez, SSN 536-22-1234, mail maria@example.org.\n";

Deno.test("pii scan: one masked entity per line", async () => {
  const r = await cli(["scan"], TEXT);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 3);
  assert.match(lines[1], /^US_SSN\s+28-39\s+1\.00\s+5\*{9}4$/);
  assert.ok(!r.stdout.includes("536-22-1234") && !r.stdout.includes("maria@example.org"));
});

Deno.test("pii scan --json: offsets into the input", async () => {
  const r = await cli(["scan", "--json"], TEXT);
  assert.equal(r.code, 0, r.stderr);
  const { entities } = JSON.parse(r.stdout);
  assert.deepEqual(
    entities.map((e: { type: string; start: number; end: number }) => [
      e.type,
      TEXT.slice(e.start, e.end),
    ]),
    [["PERSON", "Maria Gonzalez"], ["US_SSN", "536-22-1234"], [
      "EMAIL_ADDRESS",
      "maria@example.org",
    ]],
  );
});

Deno.test("pii scan --jsonl: one output line per input line", async () => {
  const input = [
    JSON.stringify({ text: "card 4111 1111 1111 1111" }),
    JSON.stringify({ text: "nothing here" }),
    JSON.stringify({ text: "🙂 NPI 1234567893" }),
  ].join("\n") + "\n";
  const r = await cli(["scan", "--jsonl"], input);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(out.length, 3);
  assert.deepEqual(out[0].entities.map((e: { type: string }) => e.type), ["CREDIT_CARD"]);
  assert.deepEqual(out[1].entities, []);
  assert.deepEqual(Object.keys(out[2].entities[0]), ["type", "start", "end", "score"]);
  assert.equal(
    "🙂 NPI 1234567893".slice(out[2].entities[0].start, out[2].entities[0].end),
    "1234567893",
  );
});

Deno.test("pii redact: consistent placeholders", async () => {
  const r = await cli(["redact"], "SSN 536-22-1234, again 536-22-1234, other 536-22-4321\n");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "SSN <US_SSN_1>, again <US_SSN_1>, other <US_SSN_2>\n");
});

Deno.test("pii: bad input gets one line with the line number and a non-zero exit", async () => {
  const badJson = await cli(["scan", "--jsonl"], '{"text": "a"}\n{oops\n');
  assert.notEqual(badJson.code, 0);
  assert.equal(
    badJson.stderr.trim(),
    "clawcage: pii: 1 of 2 lines failed (first: stdin:2: not valid JSON)",
  );
  const badShape = await cli(["scan", "--jsonl"], '{"text": 5}\n');
  assert.equal(
    badShape.stderr.trim(),
    'clawcage: pii: 1 of 1 lines failed (first: stdin:1: expected {"text": "..."})',
  );
  const badUtf8 = await cli(["scan"], new Uint8Array([0x6f, 0x6b, 0x0a, 0xff, 0xfe, 0x0a]));
  assert.notEqual(badUtf8.code, 0);
  assert.equal(badUtf8.stderr.trim(), "clawcage: pii: stdin:2: input is not valid UTF-8");
  const noFile = await cli(["scan", "/nonexistent/file.txt"], "");
  assert.equal(noFile.stderr.trim(), "clawcage: pii: /nonexistent/file.txt: no such file");
  assert.notEqual(noFile.code, 0);
});

Deno.test("pii scan --jsonl: a bad line gets an error object in its place; the rest go on", async () => {
  const enc = new TextEncoder();
  const input = new Uint8Array([
    ...enc.encode(JSON.stringify({ text: "SSN 536-22-1234" }) + "\n"),
    ...enc.encode("{oops\n"),
    ...enc.encode('{"text": 5}\n'),
    ...enc.encode('{"text": "'),
    0xff,
    ...enc.encode('"}\n'), // not UTF-8
    ...enc.encode(JSON.stringify({ text: "card 4111 1111 1111 1111" }) + "\n"),
  ]);
  const r = await cli(["scan", "--jsonl"], input);
  assert.equal(r.code, 1, r.stderr);
  const out = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(out.length, 5);
  assert.deepEqual(out[0].entities.map((e: { type: string }) => e.type), ["US_SSN"]);
  assert.deepEqual(out[1], { line: 2, error: "not valid JSON" });
  assert.deepEqual(out[2], { line: 3, error: 'expected {"text": "..."}' });
  assert.deepEqual(out[3], { line: 4, error: "not valid UTF-8" });
  assert.deepEqual(out[4].entities.map((e: { type: string }) => e.type), ["CREDIT_CARD"]);
  assert.equal(
    r.stderr.trim(),
    "clawcage: pii: 3 of 5 lines failed (first: stdin:2: not valid JSON)",
  );
});
