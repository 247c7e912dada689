// The decision protocol's parsing and line splitting (pure).

import assert from "node:assert/strict";
import { LineSplitter, parseRequest } from "../../core/pdp/protocol.ts";

Deno.test("a connection-level and a request-level request parse", () => {
  assert.deepEqual(parseRequest('{"id":1,"binary":"/usr/bin/curl","host":"a.com","port":443}'), {
    id: 1,
    req: { binary: "/usr/bin/curl", host: "a.com", port: 443 },
  });
  const r = parseRequest(
    '{"id":"x","binary":"","host":"a.com","port":80,"method":"GET","path":"/p","query":"a=1"}',
  );
  assert.deepEqual(
    parseRequest(
      '{"id":2,"binary":"/usr/bin/curl","ancestors":["/usr/bin/node"],"host":"a.com","port":443}',
    ),
    {
      id: 2,
      req: { binary: "/usr/bin/curl", ancestors: ["/usr/bin/node"], host: "a.com", port: 443 },
    },
  );
  assert.deepEqual(r, {
    id: "x",
    req: { binary: "", host: "a.com", port: 80, method: "GET", path: "/p", query: "a=1" },
  });
});

Deno.test("bad requests are error replies that keep the id when there is one", () => {
  const cases: [string, string | number | null, RegExp][] = [
    ["{", null, /not JSON/],
    ["[1]", null, /object/],
    ['{"binary":"","host":"a","port":1}', null, /id/],
    ['{"id":1.5,"binary":"","host":"a","port":1}', null, /id/],
    ['{"id":2,"host":"a","port":1}', 2, /binary/],
    ['{"id":3,"binary":"","host":"a","port":70000}', 3, /port/],
    ['{"id":4,"binary":"","host":"a","port":"443"}', 4, /port/],
    ['{"id":5,"binary":"","host":"a","port":1,"method":"GET"}', 5, /together/],
    ['{"id":6,"binary":"","host":"a","port":1,"extra":1}', 6, /unknown field/],
    [`{"id":7,"binary":"","host":"${"a".repeat(2000)}","port":1}`, 7, /longer/],
    ['{"id":8,"binary":"","host":"a","port":1,"ancestors":"/bin/sh"}', 8, /ancestors/],
    ['{"id":9,"binary":"","host":"a","port":1,"ancestors":[1]}', 9, /ancestors/],
    [
      `{"id":10,"binary":"","host":"a","port":1,"ancestors":${
        JSON.stringify(Array(65).fill("/x"))
      }}`,
      10,
      /at most 64/,
    ],
  ];
  for (const [line, id, error] of cases) {
    const r = parseRequest(line);
    assert.ok("error" in r, line);
    assert.equal(r.id, id, line);
    assert.match(r.error, error, line);
  }
});

Deno.test("line splitter: lines across chunks, several per chunk, too-long lines skipped", () => {
  const s = new LineSplitter(8);
  const enc = (t: string) => new TextEncoder().encode(t);
  assert.deepEqual(s.push(enc("ab")), []);
  assert.deepEqual(s.push(enc("c\nde\nf")), ["abc", "de"]);
  assert.deepEqual(s.push(enc("123456789")), [{ tooLong: true }]);
  assert.deepEqual(s.push(enc("more of the long line")), []);
  assert.deepEqual(s.push(enc("\nok\n")), ["ok"]);
  assert.deepEqual(s.push(enc("12345678\n")), ["12345678"]);
});
