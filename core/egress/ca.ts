// The per-sandbox inspection CA: generated at start (ECDSA P-256), its private key only in this
// process's memory, its certificate written where the sandbox can read and trust it. Leaf
// certificates are made per host on first use and cached (bounded).

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { join } from "node:path";
import * as tls from "node:tls";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const HOUR = 3600_000;
/** Leaf certificates live this long (the CA lives as long as the sandbox, up to a year). */
const LEAF_VALIDITY = 7 * 24 * HOUR;
const CA_VALIDITY = 365 * 24 * HOUR;
/** Leaf contexts kept (least recently used dropped first). */
const MAX_LEAVES = 1000;
/** File name of the CA certificate in the directory passed to writeCert(). */
export const CA_CERT_FILE = "clawcage-ca.pem";

function serial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  return Buffer.from(b).toString("hex");
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString("base64").match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

export class InspectionCa {
  readonly #caKey: CryptoKey;
  readonly #caCert: x509.X509Certificate;
  readonly #leafKeys: CryptoKeyPair;
  readonly #leafKeyPem: string;
  readonly #leaves = new Map<string, Promise<tls.SecureContext>>();
  /** PEM of the CA certificate (what the sandbox trusts). */
  readonly certPem: string;

  private constructor(
    caKey: CryptoKey,
    caCert: x509.X509Certificate,
    leafKeys: CryptoKeyPair,
    leafKeyPem: string,
  ) {
    this.#caKey = caKey;
    this.#caCert = caCert;
    this.#leafKeys = leafKeys;
    this.#leafKeyPem = leafKeyPem;
    this.certPem = caCert.toString("pem");
  }

  /** Generates a fresh CA named for the sandbox. Private keys are not extractable from here. */
  static async create(sandbox: string): Promise<InspectionCa> {
    const caKeys = await crypto.subtle.generateKey(ALG, false, ["sign", "verify"]);
    const now = Date.now();
    const name = `CN=clawcage inspection CA (${sandbox.replace(/[,+="<>#;\\]/g, "_")}), O=clawcage`;
    const caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + CA_VALIDITY),
      keys: caKeys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    // One leaf key for every leaf of this sandbox; node:tls needs it as PEM.
    const leafKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
    const leafKeyPem = pem(
      "PRIVATE KEY",
      await crypto.subtle.exportKey("pkcs8", leafKeys.privateKey),
    );
    return new InspectionCa(caKeys.privateKey, caCert, leafKeys, leafKeyPem);
  }

  /** Writes the CA certificate (not the key) as `dir/clawcage-ca.pem`, mode 0644; returns the path. */
  writeCert(dir: string): string {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const path = join(dir, CA_CERT_FILE);
    fs.writeFileSync(path, this.certPem, { mode: 0o644 });
    fs.chmodSync(path, 0o644);
    return path;
  }

  /** A leaf certificate (PEM) for `host`, a DNS name or an IP address. */
  async leafPem(host: string): Promise<string> {
    const now = Date.now();
    const isIp = /^[0-9.]+$/.test(host) || host.includes(":");
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${isIp ? "ip" : host}`,
      issuer: this.#caCert.subject,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + LEAF_VALIDITY),
      signingKey: this.#caKey,
      publicKey: this.#leafKeys.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: isIp ? "ip" : "dns", value: host }]),
        await x509.AuthorityKeyIdentifierExtension.create(this.#caCert),
      ],
    });
    return cert.toString("pem") + this.certPem;
  }

  /** TLS server context presenting a leaf for `host` (cached per host). */
  contextFor(host: string): Promise<tls.SecureContext> {
    let ctx = this.#leaves.get(host);
    if (ctx) {
      this.#leaves.delete(host);
      this.#leaves.set(host, ctx);
      return ctx;
    }
    ctx = this.leafPem(host).then((cert) =>
      tls.createSecureContext({ cert, key: this.#leafKeyPem, minVersion: "TLSv1.2" })
    );
    ctx.catch(() => this.#leaves.delete(host));
    this.#leaves.set(host, ctx);
    if (this.#leaves.size > MAX_LEAVES) {
      this.#leaves.delete(this.#leaves.keys().next().value!);
    }
    return ctx;
  }
}
