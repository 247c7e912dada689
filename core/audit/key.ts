// The sealing key: 32 random bytes in a file of mode 0600, in a directory the caller chooses
// (the supervisor's state directory, never the log directory and never inside a sandbox).
// The same directory keeps the sealed head of each log (head-<log_id>.json) so that verify can
// tell a log that was cut back to an earlier seal from a complete one.

import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import { publicKeyId } from "./chain.ts";
import { dirname, join, resolve } from "node:path";
import { writeAllSync } from "./segments.ts";

export const KEY_FILE = "audit.key";
/** The Ed25519 signing key (PKCS#8 PEM, 0600) and its public key (SPKI PEM, 0644). */
export const SIGN_KEY_FILE = "audit-sign.pem";
export const PUBLIC_KEY_FILE = "audit-sign.pub.pem";

export class AuditKeyError extends Error {}

export interface SealedHead {
  log_id: string;
  seq: number;
  /** SHA-256 of the seal record's line. */
  hash: string;
  time: string;
}

/** Reads the key at `path`; refuses a key that group or others can read. */
export function readKey(path: string): Uint8Array {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (e) {
    throw new AuditKeyError(`cannot read audit key ${path}: ${(e as Error).message}`);
  }
  if (info.isDirectory) {
    throw new AuditKeyError(
      `audit key ${path} is a directory; give the key file (${join(path, KEY_FILE)})`,
    );
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new AuditKeyError(
      `audit key ${path} has mode ${(info.mode & 0o777).toString(8)}; it must be 600`,
    );
  }
  const hex = Deno.readTextFileSync(path).trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new AuditKeyError(`audit key ${path} is not 64 hex digits`);
  }
  return Uint8Array.from(Buffer.from(hex, "hex"));
}

/** Loads the key from `keyDir`, creating the directory (0700) and the key (0600) if missing. */
export function loadOrCreateKey(keyDir: string, logDir: string): { key: Uint8Array; path: string } {
  const dir = resolve(keyDir);
  const logs = resolve(logDir);
  if (dir === logs || dir.startsWith(logs + "/")) {
    throw new AuditKeyError(`the audit key directory ${dir} must not be inside the log directory`);
  }
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, KEY_FILE);
  try {
    const f = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
    try {
      writeAllSync(
        f,
        new TextEncoder().encode(Buffer.from(randomBytes(32)).toString("hex") + "\n"),
      );
      f.syncSync();
    } finally {
      f.close();
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) {
      throw new AuditKeyError(`cannot create audit key ${path}: ${(e as Error).message}`);
    }
  }
  return { key: readKey(path), path };
}

export function headPath(keyFile: string, logId: string): string {
  return join(dirname(keyFile), `head-${logId}.json`);
}

/** Atomically replaces the sealed-head file (write, fsync, rename). */
export function writeHead(keyFile: string, head: SealedHead, sync: boolean): void {
  const path = headPath(keyFile, head.log_id);
  const tmp = `${path}.tmp`;
  const f = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    writeAllSync(f, new TextEncoder().encode(JSON.stringify(head) + "\n"));
    if (sync) f.syncSync();
  } finally {
    f.close();
  }
  Deno.renameSync(tmp, path);
}

export function readHead(keyFile: string, logId: string): SealedHead | null {
  try {
    const v = JSON.parse(Deno.readTextFileSync(headPath(keyFile, logId)));
    if (typeof v?.seq === "number" && typeof v?.hash === "string") return v as SealedHead;
    return null;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new AuditKeyError(`cannot read sealed head for log ${logId}: ${(e as Error).message}`);
  }
}

export interface SigningKey {
  privateKey: KeyObject;
  /** publicKeyId() of its public key. */
  id: string;
  publicPath: string;
}

/**
 * Loads the Ed25519 signing key from `keyDir`, creating the pair on first use. The public key
 * file can be given to anyone who verifies the log: it checks seals and cannot make them.
 */
export function loadOrCreateSigningKey(keyDir: string): SigningKey {
  const dir = resolve(keyDir);
  const path = join(dir, SIGN_KEY_FILE);
  const publicPath = join(dir, PUBLIC_KEY_FILE);
  try {
    const { privateKey } = generateKeyPairSync("ed25519");
    const f = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
    try {
      writeAllSync(
        f,
        new TextEncoder().encode(privateKey.export({ type: "pkcs8", format: "pem" }) as string),
      );
      f.syncSync();
    } finally {
      f.close();
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) {
      throw new AuditKeyError(`cannot create audit signing key ${path}: ${(e as Error).message}`);
    }
  }
  let privateKey: KeyObject;
  try {
    const info = Deno.statSync(path);
    if (info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new AuditKeyError(
        `audit signing key ${path} has mode ${(info.mode & 0o777).toString(8)}; it must be 600`,
      );
    }
    privateKey = createPrivateKey(Deno.readTextFileSync(path));
    if (privateKey.asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 key");
  } catch (e) {
    if (e instanceof AuditKeyError) throw e;
    throw new AuditKeyError(`cannot read audit signing key ${path}: ${(e as Error).message}`);
  }
  const publicKey = createPublicKey(privateKey);
  const pem = publicKey.export({ type: "spki", format: "pem" }) as string;
  let current: string | null = null;
  try {
    current = Deno.readTextFileSync(publicPath);
  } catch { /* written below */ }
  if (current !== pem) Deno.writeTextFileSync(publicPath, pem, { mode: 0o644 });
  return { privateKey, id: publicKeyId(publicKey), publicPath };
}

/** Reads a public key file (SPKI PEM) for verification. */
export function readPublicKey(path: string): { key: KeyObject; id: string } {
  let isDir = false;
  try {
    isDir = Deno.statSync(path).isDirectory;
  } catch { /* reported by the read below */ }
  if (isDir) {
    throw new AuditKeyError(
      `audit public key ${path} is a directory; give the key file (${join(path, PUBLIC_KEY_FILE)})`,
    );
  }
  try {
    const key = createPublicKey(Deno.readTextFileSync(path));
    if (key.asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 public key");
    return { key, id: publicKeyId(key) };
  } catch (e) {
    throw new AuditKeyError(`cannot read audit public key ${path}: ${(e as Error).message}`);
  }
}
