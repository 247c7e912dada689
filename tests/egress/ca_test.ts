// The per-sandbox inspection CA: certificate written without any key, leaves chained to it with
// the right names and usages, leaf contexts cached per host; the DER the CA writes (core/egress/
// certificate.ts) checked by node:crypto, @peculiar/x509 and openssl.

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import assert from "node:assert/strict";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { CA_CERT_FILE, InspectionCa } from "../../core/egress/ca.ts";
import { issueCertificate, KEY_USAGE } from "../../core/egress/certificate.ts";

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

Deno.test("inspection CA: @peculiar/x509 reads the extensions the CA and its leaves must carry", async () => {
  const ca = await InspectionCa.create("sb-ext");
  const caCert = new x509.X509Certificate(ca.certPem);
  const bc = caCert.getExtension(x509.BasicConstraintsExtension)!;
  assert.equal(bc.critical, true);
  assert.equal(bc.ca, true);
  assert.equal(bc.pathLength, 0);
  const ku = caCert.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.critical, true);
  assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  assert.ok(await caCert.verify({ signatureOnly: true }), "self-signature");
  assert.equal(caCert.subject, caCert.issuer);
  assert.match(caCert.subject, /^CN=clawcage inspection CA \(sb-ext\), O=clawcage$/);

  const pem = await ca.leafPem("2001:db8::1");
  const leaf = new x509.X509Certificate(
    pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25),
  );
  assert.equal(leaf.issuer, caCert.subject);
  assert.equal(leaf.subject, "CN=ip");
  assert.equal(leaf.getExtension(x509.BasicConstraintsExtension)!.ca, false);
  assert.equal(
    leaf.getExtension(x509.KeyUsagesExtension)!.usages,
    x509.KeyUsageFlags.digitalSignature,
  );
  assert.deepEqual([...leaf.getExtension(x509.ExtendedKeyUsageExtension)!.usages], [
    x509.ExtendedKeyUsage.serverAuth,
  ]);
  assert.deepEqual(
    leaf.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON(),
    [{ type: "ip", value: "2001:db8::1" }],
  );
  assert.equal(leaf.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId, ski);
  assert.ok(await leaf.verify({ publicKey: caCert.publicKey, signatureOnly: true }));
});

const openssl = ["/usr/bin/openssl", "/bin/openssl"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});
if (!openssl) console.log("ca_test: openssl not installed; the openssl verify test is skipped");

Deno.test({
  name: "inspection CA: openssl verifies leaves for names and IPs strictly, as TLS server certs",
  ignore: !openssl,
  fn: async () => {
    const ca = await InspectionCa.create("sb-openssl");
    const dir = Deno.makeTempDirSync();
    try {
      const caPath = ca.writeCert(dir);
      for (
        const [host, check] of [
          ["a-very-long-label-to-make-the-certificate-longer.example.com", "-verify_hostname"],
          ["10.1.2.3", "-verify_ip"],
          ["2001:db8::1", "-verify_ip"],
        ]
      ) {
        const leafPath = join(dir, "leaf.pem");
        Deno.writeTextFileSync(leafPath, await ca.leafPem(host));
        const out = await new Deno.Command(openssl!, {
          args: [
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            check,
            host,
            "-CAfile",
            caPath,
            leafPath,
          ],
        }).output();
        const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, `${host}: ${text}`);
        assert.match(text, /: OK/);
        // The same leaf for another name fails: the check is real.
        const wrong = await new Deno.Command(openssl!, {
          args: [
            "verify",
            check,
            check === "-verify_ip" ? "10.9.9.9" : "x.example.com",
            "-CAfile",
            caPath,
            leafPath,
          ],
        }).output();
        assert.notEqual(wrong.code, 0, host);
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("certificate: minimal DER integers, long lengths, GeneralizedTime from 2050", async () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const signing = await crypto.subtle.importKey(
    "pkcs8",
    Uint8Array.from(privateKey.export({ type: "pkcs8", format: "der" })),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign"],
  );
  const spki = Uint8Array.from(publicKey.export({ type: "spki", format: "der" }));
  const name = { cn: "x".repeat(300), o: "clawcage" };
  const der = await issueCertificate({
    // Leading zero bytes must be dropped (DER INTEGERs are minimal), a high bit needs a 0 byte.
    serial: Uint8Array.of(0, 0, 0x80, 1),
    subject: name,
    issuer: name,
    notBefore: new Date("2049-12-31T23:59:59Z"),
    notAfter: new Date("2051-06-01T12:00:00Z"),
    publicKeySpki: spki,
    ca: { pathLength: 0 },
    keyUsage: [KEY_USAGE.keyCertSign],
  }, signing);
  const cert = new X509Certificate(der);
  // [0] { INTEGER 2 } (v3), then the serial: INTEGER 00 80 01.
  const head = [0xa0, 3, 2, 1, 2, 0x02, 3, 0x00, 0x80, 0x01];
  const at = der.findIndex((_, i) => head.every((b, j) => der[i + j] === b));
  assert.ok(at > 0 && at < 12, "v3 then the minimal serial, at the start of the TBS");
  assert.equal(new Date(cert.validFrom).toISOString(), "2049-12-31T23:59:59.000Z");
  assert.equal(new Date(cert.validTo).toISOString(), "2051-06-01T12:00:00.000Z");
  assert.ok(cert.verify(cert.publicKey));
  assert.equal(cert.subject, `CN=${"x".repeat(300)}\nO=clawcage`);
  // The same fields through an independent parser.
  const parsed = new x509.X509Certificate(der);
  assert.equal(BigInt("0x" + parsed.serialNumber), 0x8001n);
  assert.equal(parsed.notAfter.toISOString(), "2051-06-01T12:00:00.000Z");
});
