// X.509 v3 certificates for the inspection CA (core/egress/ca.ts), encoded in DER by hand and
// signed with ECDSA P-256 / SHA-256 through WebCrypto. Only what the CA issues is supported:
// CN/O names, validity, an EC public key, and the extensions basicConstraints, keyUsage,
// extKeyUsage (serverAuth), subjectAltName (DNS name or IP address), subject and authority key
// identifiers. Small on purpose: a general X.509 library costs ~100 ms of module loading at
// every `clawcage run`. Tests check the output with node:crypto, @peculiar/x509 and openssl.

import { Buffer } from "node:buffer";
import { isIPv4 } from "node:net";
import { ipv6Bytes } from "./host.ts";

// ---- DER ---------------------------------------------------------------------------------

type Bytes = Uint8Array<ArrayBuffer>;

function concat(parts: Bytes[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function tlv(tag: number, ...content: Bytes[]): Bytes {
  const body = concat(content);
  const n = body.length;
  const len = n < 0x80
    ? [n]
    : n < 0x100
    ? [0x81, n]
    : n < 0x10000
    ? [0x82, n >> 8, n & 0xff]
    : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return concat([Uint8Array.of(tag, ...len), body]);
}

const seq = (...items: Bytes[]) => tlv(0x30, ...items);
const set = (...items: Bytes[]) => tlv(0x31, ...items);
const utf8 = (s: string) => tlv(0x0c, new TextEncoder().encode(s));
const octets = (b: Bytes) => tlv(0x04, b);
const TRUE = Uint8Array.of(0x01, 0x01, 0xff);
/** [n] EXPLICIT (constructed, wraps a whole TLV). */
const explicit = (n: number, ...items: Bytes[]) => tlv(0xa0 | n, ...items);
/** [n] IMPLICIT primitive (replaces the tag of a primitive value). */
const implicit = (n: number, b: Bytes) => tlv(0x80 | n, b);

/** A non-negative INTEGER from big-endian bytes (minimal, with a 0 byte when the top bit is set). */
function unsigned(b: Bytes): Bytes {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, ...(v[0] & 0x80 ? [Uint8Array.of(0), v] : [v]));
}

const int = (n: number) => unsigned(Uint8Array.of(n));

function oid(text: string): Bytes {
  const [a, b, ...rest] = text.split(".").map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const groups = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) {
      groups.unshift((v & 0x7f) | 0x80);
    }
    out.push(...groups);
  }
  return tlv(0x06, Uint8Array.from(out));
}

/** BIT STRING of whole bytes (no unused bits). */
const bits = (b: Bytes) => tlv(0x03, Uint8Array.of(0), b);

/** BIT STRING for named bits (bit 0 is the first, most significant), trailing zeros dropped. */
function namedBits(flags: number[]): Bytes {
  const last = Math.max(...flags);
  const bytes = new Uint8Array((last >> 3) + 1);
  for (const bit of flags) bytes[bit >> 3] |= 0x80 >> (bit & 7);
  return tlv(0x03, Uint8Array.of(7 - (last & 7)), bytes);
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5), to the second. */
function time(at: Date): Bytes {
  const iso = at.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z";
  const year = at.getUTCFullYear();
  if (year >= 1950 && year < 2050) return tlv(0x17, new TextEncoder().encode(digits.slice(2)));
  return tlv(0x18, new TextEncoder().encode(digits));
}

// ---- X.509 -------------------------------------------------------------------------------

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

/** keyUsage bits (RFC 5280 4.2.1.3). */
export const KEY_USAGE = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

export const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;

/** A distinguished name: a common name and an optional organisation, in that order. */
export interface Name {
  cn: string;
  o?: string;
}

export interface CertificateFields {
  /** Positive serial number, big-endian (at most 20 bytes). */
  serial: Bytes;
  subject: Name;
  issuer: Name;
  notBefore: Date;
  notAfter: Date;
  /** The subject's public key as SubjectPublicKeyInfo DER (WebCrypto's "spki" export). */
  publicKeySpki: Bytes;
  /** basicConstraints: a CA (with the path length) or not. */
  ca: { pathLength: number } | false;
  keyUsage: number[];
  /** extKeyUsage serverAuth. */
  serverAuth?: boolean;
  /** subjectAltName: one DNS name or IP address. */
  altName?: { dns: string } | { ip: string };
  /** Key identifier of the issuer's public key (authorityKeyIdentifier). */
  authorityKeyId?: Bytes;
}

function name(n: Name): Bytes {
  const rdn = (type: string, value: string) => set(seq(oid(type), utf8(value)));
  return seq(rdn(OID.commonName, n.cn), ...(n.o !== undefined ? [rdn(OID.organization, n.o)] : []));
}

function extension(type: string, critical: boolean, value: Bytes): Bytes {
  return seq(oid(type), ...(critical ? [TRUE] : []), octets(value));
}

function ipBytes(ip: string): Bytes {
  return isIPv4(ip) ? Uint8Array.from(ip.split(".").map(Number)) : Uint8Array.from(ipv6Bytes(ip));
}

/** The subjectPublicKey bits of a SubjectPublicKeyInfo (what key identifiers hash). */
function publicKeyBits(spki: Bytes): Bytes {
  // SEQUENCE { AlgorithmIdentifier, BIT STRING }: the BIT STRING is the last TLV. P-256 keys
  // are 65 bytes uncompressed: 03 42 00, then the 65 bytes.
  const at = spki.length - 68;
  if (spki[at] !== 0x03 || spki[at + 1] !== 66 || spki[at + 2] !== 0) {
    throw new Error("not a P-256 SubjectPublicKeyInfo");
  }
  return spki.subarray(at + 3);
}

/** Key identifier of a public key: SHA-1 of its subjectPublicKey bits (RFC 5280 4.2.1.2). */
export async function keyIdentifier(spki: Bytes): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest("SHA-1", publicKeyBits(spki)));
}

/** WebCrypto's ECDSA signature (r || s, 32 bytes each) as DER Ecdsa-Sig-Value. */
function ecdsaDer(raw: Bytes): Bytes {
  const half = raw.length / 2;
  return seq(unsigned(raw.subarray(0, half)), unsigned(raw.subarray(half)));
}

/** Builds the certificate and signs it with the issuer's ECDSA P-256 key; returns DER. */
export async function issueCertificate(f: CertificateFields, issuerKey: CryptoKey): Promise<Bytes> {
  const extensions: Bytes[] = [
    extension(
      OID.basicConstraints,
      true,
      f.ca ? seq(TRUE, int(f.ca.pathLength)) : seq(),
    ),
    extension(OID.keyUsage, true, namedBits(f.keyUsage)),
  ];
  if (f.serverAuth) extensions.push(extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))));
  if (f.altName) {
    const general = "dns" in f.altName
      ? implicit(2, new TextEncoder().encode(f.altName.dns))
      : implicit(7, ipBytes(f.altName.ip));
    extensions.push(extension(OID.subjectAltName, false, seq(general)));
  }
  extensions.push(
    extension(OID.subjectKeyIdentifier, false, octets(await keyIdentifier(f.publicKeySpki))),
  );
  if (f.authorityKeyId) {
    extensions.push(
      extension(OID.authorityKeyIdentifier, false, seq(implicit(0, f.authorityKeyId))),
    );
  }
  const algorithm = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    explicit(0, int(2)), // v3
    unsigned(f.serial),
    algorithm,
    name(f.issuer),
    seq(time(f.notBefore), time(f.notAfter)),
    name(f.subject),
    f.publicKeySpki,
    explicit(3, seq(...extensions)),
  );
  const signature = new Uint8Array(await crypto.subtle.sign(SIGNING, issuerKey, tbs));
  return seq(tbs, algorithm, bits(ecdsaDer(signature)));
}

/** PEM text of DER bytes under `label` ("CERTIFICATE", "PRIVATE KEY"). */
export function pem(label: string, der: Bytes): string {
  const b64 = Buffer.from(der).toString("base64").match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
