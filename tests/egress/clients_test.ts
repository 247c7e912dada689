// Another real client than curl: Python's urllib, configured only by the environment the agent
// gets (HTTP_PROXY/HTTPS_PROXY and SSL_CERT_FILE), plain HTTP and inspected HTTPS.

import assert from "node:assert/strict";
import { systemProgram } from "../../core/self.ts";
import {
  httpsUpstream,
  httpUpstream,
  startProxy,
  testInspectionCa,
  upstreamPki,
} from "./helpers.ts";

const python = systemProgram("python3");
if (!python) console.log("skipping Python client test: python3 not installed");

const SCRIPT = `
import json, sys, urllib.request, urllib.error
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            print(r.status, json.loads(r.read())["url"])
    except urllib.error.HTTPError as e:
        print(e.code, json.loads(e.read())["reason"])
`;

Deno.test({
  name: "python urllib through the proxy: plain HTTP, inspected HTTPS, denials as 403 JSON",
  ignore: !python,
  async fn() {
    const pki = await upstreamPki(["py.test"]);
    const ca = await testInspectionCa();
    const dir = Deno.makeTempDirSync();
    const caFile = ca.writeCert(dir);
    const plain = await httpUpstream();
    const secure = await httpsUpstream(pki.cert, pki.key);
    const p = await startProxy([
      { host: "py.test", port: plain.port },
      { host: "py.test", port: secure.port, methods: ["GET"], pathPrefix: "/ok" },
    ], { inspection: { ca, upstreamCa: [pki.caPem] } });
    try {
      const out = await new Deno.Command(python!, {
        args: [
          "-c",
          SCRIPT,
          `http://py.test:${plain.port}/hello?x=1`,
          `https://py.test:${secure.port}/ok/1`,
          `https://py.test:${secure.port}/nope`,
        ],
        env: {
          HTTP_PROXY: p.url,
          HTTPS_PROXY: p.url,
          http_proxy: p.url,
          https_proxy: p.url,
          SSL_CERT_FILE: caFile,
          NO_PROXY: "",
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.deepEqual(text.trim().split("\n"), [
        "200 /hello?x=1",
        "200 /ok/1",
        "403 no rule allows GET /nope on py.test",
      ]);
    } finally {
      await p.close();
      await plain.close();
      await secure.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
