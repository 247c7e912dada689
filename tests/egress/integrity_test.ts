// Bytes arrive exactly as sent, through every path: plain HTTP (two large bodies back to back on
// one kept-alive connection, so body boundaries inside socket chunks matter), CONNECT tunnel and
// inspected HTTPS, checked by SHA-256 against the upstream's deterministic pseudo-random body.

import assert from "node:assert/strict";
import {
  curlSha,
  hasCurl,
  httpsUpstream,
  httpUpstream,
  randomBytesFor,
  sha,
  startProxy,
  testInspectionCa,
  upstreamPki,
} from "./helpers.ts";

const N = 3 * 1024 * 1024 + 17;

Deno.test({
  name: "integrity: plain HTTP keep-alive, CONNECT tunnel and inspected HTTPS deliver exact bytes",
  ignore: !hasCurl,
  async fn() {
    const pki = await upstreamPki(["data.test"]);
    const ca = await testInspectionCa();
    const dir = Deno.makeTempDirSync();
    const caFile = ca.writeCert(dir);
    const plain = await httpUpstream();
    const secure = await httpsUpstream(pki.cert, pki.key);
    const p = await startProxy([
      { host: "data.test", port: plain.port },
      { host: "data.test", port: secure.port, methods: ["GET"] },
    ], { inspection: { ca, upstreamCa: [pki.caPem] } });
    const want1 = sha(randomBytesFor(N, 7));
    const want2 = sha(randomBytesFor(N + 1, 9));
    try {
      const u1 = `http://data.test:${plain.port}/random?n=${N}&seed=7`;
      const u2 = `http://data.test:${plain.port}/random?n=${N + 1}&seed=9`;
      assert.deepEqual(await curlSha(["-x", p.url], [u1, u2]), [want1, want2]);
      const opens = p.audit.events.filter((e) => e.class === "network" && e.activity === "open");
      assert.equal(opens.length, 1, "both bodies on one upstream connection");
      assert.deepEqual(await curlSha(["-p", "-x", p.url], [u1]), [want1]);
      const s1 = `https://data.test:${secure.port}/random?n=${N}&seed=7`;
      const s2 = `https://data.test:${secure.port}/random?n=${N + 1}&seed=9`;
      assert.deepEqual(await curlSha(["--cacert", caFile, "-x", p.url], [s1, s2]), [want1, want2]);
    } finally {
      await p.close();
      await plain.close();
      await secure.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
