// The per-sandbox inspection CA: certificate written without any key, leaves chained to it with
// the right names and usages, leaf contexts cached per host.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { CA_CERT_FILE, InspectionCa } from "../../core/egress/ca.ts";

Deno.test("inspection CA: cert file has no key; leaves chain to the CA for names and IPs", async () => {
  const ca = await InspectionCa.create('sb,with=odd"chars');
  const dir = Deno.makeTempDirSync();
  try {
    const path = ca.writeCert(join(dir, "trust"));
    assert.equal(path, join(dir, "trust", CA_CERT_FILE));
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o644);
    const text = Deno.readTextFileSync(path);
    assert.doesNotMatch(text, /PRIVATE KEY/);
    const caCert = new X509Certificate(text);
    assert.ok(caCert.ca);
    assert.match(caCert.subject, /clawcage inspection CA/);

    for (const host of ["api.example.com", "10.1.2.3", "2001:db8::1"]) {
      const pem = await ca.leafPem(host);
      assert.doesNotMatch(pem, /PRIVATE KEY/);
      const leaf = new X509Certificate(pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25));
      assert.ok(leaf.verify(caCert.publicKey), host);
      assert.ok(!leaf.ca);
      assert.equal(leaf.checkIssued(caCert), true);
      if (host.includes(".") && !/^[0-9.]+$/.test(host)) assert.equal(leaf.checkHost(host), host);
      else assert.equal(leaf.checkIP(host), host);
      assert.equal(leaf.checkHost("other.example.com"), undefined);
      const days = (Date.parse(leaf.validTo) - Date.now()) / 86400_000;
      assert.ok(days > 6 && days <= 7, `leaf valid for ${days} days`);
    }
    // Contexts are cached per host.
    const a = await ca.contextFor("x.example.com");
    assert.equal(await ca.contextFor("x.example.com"), a);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
