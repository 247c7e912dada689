// The per-sandbox inspection CA: generated at start (ECDSA P-256), its private key only in this
// process's memory, its certificate written where the sandbox can read and trust it. Leaf
// certificates are made per host on first use and cached (bounded).

import { generateKeyPairSync, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { join } from "node:path";
import * as tls from "node:tls";
import { issueCertificate, KEY_USAGE, keyIdentifier, type Name, pem } from "./certificate.ts";

const KEY_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
const HOUR = 3600_000;
/** Leaf certificates live this long (the CA lives as long as the sandbox, up to a year). */
const LEAF_VALIDITY = 7 * 24 * HOUR;
const CA_VALIDITY = 365 * 24 * HOUR;
/** Leaf contexts kept (least recently used dropped first). */
const MAX_LEAVES = 1000;
/** File name of the CA certificate in the directory passed to writeCert(). */
export const CA_CERT_FILE = "clawcage-ca.pem";

function serial(): Uint8Array<ArrayBuffer> {
  const b = Uint8Array.from(randomBytes(16));
  b[0] &= 0x7f;
  b[0] |= 0x01; // positive and 16 bytes long
  return b;
}

/**
 * A fresh P-256 key pair. Generated with node:crypto (WebCrypto's first ECDSA key generation
 * costs 30-50 ms in Deno 2.9, node:crypto's about 1 ms); the private key is returned both as
 * PKCS#8 DER and as a WebCrypto signing key that is not extractable.
 */
async function p256(): Promise<
  { pkcs8: Uint8Array<ArrayBuffer>; signing: CryptoKey; spki: Uint8Array<ArrayBuffer> }
> {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pkcs8 = Uint8Array.from(privateKey.export({ type: "pkcs8", format: "der" }));
  const spki = Uint8Array.from(publicKey.export({ type: "spki", format: "der" }));
  const signing = await crypto.subtle.importKey("pkcs8", pkcs8, KEY_ALG, false, ["sign"]);
  return { pkcs8, signing, spki };
}

export class InspectionCa {
  readonly #caKey: CryptoKey;
  readonly #caName: Name;
  readonly #caKeyId: Uint8Array<ArrayBuffer>;
  readonly #leafSpki: Uint8Array<ArrayBuffer>;
  readonly #leafKeyPem: string;
  readonly #leaves = new Map<string, Promise<tls.SecureContext>>();
  /** PEM of the CA certificate (what the sandbox trusts). */
  readonly certPem: string;

  private constructor(
    caKey: CryptoKey,
    caName: Name,
    caKeyId: Uint8Array<ArrayBuffer>,
    certPem: string,
    leafSpki: Uint8Array<ArrayBuffer>,
    leafKeyPem: string,
  ) {
    this.#caKey = caKey;
    this.#caName = caName;
    this.#caKeyId = caKeyId;
    this.certPem = certPem;
    this.#leafSpki = leafSpki;
    this.#leafKeyPem = leafKeyPem;
  }

  /** Generates a fresh CA named for the sandbox. Its private key is not extractable from here. */
  static async create(sandbox: string): Promise<InspectionCa> {
    const caKeys = await p256();
    // Only the non-extractable WebCrypto key is kept; this copy is zeroed (node's KeyObject that
    // produced it lingers in the supervisor's heap until collected: memory only, never written).
    caKeys.pkcs8.fill(0);
    const now = Date.now();
    const name = {
      cn: `clawcage inspection CA (${sandbox.replace(/[,+="<>#;\\]/g, "_")})`,
      o: "clawcage",
    };
    const caCert = await issueCertificate({
      serial: serial(),
      subject: name,
      issuer: name,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + CA_VALIDITY),
      publicKeySpki: caKeys.spki,
      ca: { pathLength: 0 },
      keyUsage: [KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign],
    }, caKeys.signing);
    // One leaf key for every leaf of this sandbox; node:tls needs it as PEM.
    const leafKeys = await p256();
    return new InspectionCa(
      caKeys.signing,
      name,
      await keyIdentifier(caKeys.spki),
      pem("CERTIFICATE", caCert),
      leafKeys.spki,
      pem("PRIVATE KEY", leafKeys.pkcs8),
    );
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
    const cert = await issueCertificate({
      serial: serial(),
      subject: { cn: isIp ? "ip" : host },
      issuer: this.#caName,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + LEAF_VALIDITY),
      publicKeySpki: this.#leafSpki,
      ca: false,
      keyUsage: [KEY_USAGE.digitalSignature],
      serverAuth: true,
      altName: isIp ? { ip: host } : { dns: host },
      authorityKeyId: this.#caKeyId,
    }, this.#caKey);
    return pem("CERTIFICATE", cert) + this.certPem;
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
