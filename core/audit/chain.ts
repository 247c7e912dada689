// The hash chain and the seal MAC: the only place that defines what a record's hash is and
// what a seal signs. Verification and the writer both use these functions.

import { createHash, createHmac, type KeyObject, sign, timingSafeEqual, verify } from "node:crypto";
import type { AuditRecord } from "./events.ts";

/** `prev` of the very first record of a log. */
export const GENESIS = "0".repeat(64);

/** SHA-256 (hex) of one record's line, without its newline: the next record's `prev`. */
export function lineHash(line: string | Uint8Array): string {
  return createHash("sha256").update(line).digest("hex");
}

/** The exact line written for a record (fixed key order; JSON, no newline). */
export function recordLine(r: AuditRecord): string {
  return JSON.stringify({ seq: r.seq, time: r.time, prev: r.prev, event: r.event });
}

/** What a seal's MAC covers: the log, the seal's own position and time, and the chain head. */
function sealMessage(logId: string, seq: number, time: string, head: string): string {
  return `clawcage-audit-seal-v1\n${logId}\n${seq}\n${time}\n${head}`;
}

export function sealMac(
  key: Uint8Array,
  logId: string,
  seq: number,
  time: string,
  head: string,
): string {
  return createHmac("sha256", key).update(sealMessage(logId, seq, time, head)).digest("hex");
}

export function sealMacValid(
  key: Uint8Array,
  logId: string,
  seq: number,
  time: string,
  head: string,
  mac: string,
): boolean {
  const want = Buffer.from(sealMac(key, logId, seq, time, head), "hex");
  const got = Buffer.from(typeof mac === "string" ? mac : "", "hex");
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Short identifier of a key (not secret): the first 16 hex digits of SHA-256 of the key. */
export function keyId(key: Uint8Array): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 16);
}

/** Ed25519 signature (base64) over the same message as the MAC: verifiable with the public key. */
export function sealSignature(
  key: KeyObject,
  logId: string,
  seq: number,
  time: string,
  head: string,
): string {
  return sign(null, Buffer.from(sealMessage(logId, seq, time, head)), key).toString("base64");
}

export function sealSignatureValid(
  publicKey: KeyObject,
  logId: string,
  seq: number,
  time: string,
  head: string,
  sig: unknown,
): boolean {
  if (typeof sig !== "string") return false;
  try {
    return verify(
      null,
      Buffer.from(sealMessage(logId, seq, time, head)),
      publicKey,
      Buffer.from(sig, "base64"),
    );
  } catch {
    return false;
  }
}

/** Short identifier of a public key: the first 16 hex digits of SHA-256 of its SPKI DER. */
export function publicKeyId(publicKey: KeyObject): string {
  return createHash("sha256").update(publicKey.export({ type: "spki", format: "der" }))
    .digest("hex").slice(0, 16);
}
