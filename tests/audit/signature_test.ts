// Ed25519 seal signatures: anyone with the public key can verify the log and nobody without the
// private key can forge it, not even someone who holds the HMAC key.

import assert from "node:assert/strict";
import { join } from "node:path";
import { lineHash, recordLine, sealMac } from "../../core/audit/chain.ts";
import type { AuditRecord } from "../../core/audit/events.ts";
import { PUBLIC_KEY_FILE, readKey, SIGN_KEY_FILE } from "../../core/audit/key.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import { AuditLog, AuditOpenError } from "../../core/audit/writer.ts";
import { cli } from "../helpers/cli.ts";
import {
  cleanup,
  readLines,
  segmentPath,
  type TempLog,
  tempLog,
  writeLines,
  writeLog,
} from "./helpers.ts";

async function sealedLog(): Promise<{ t: TempLog; seg: string; lines: string[]; pub: string }> {
  const t = tempLog();
  await writeLog(t, 200, { sealEveryRecords: 50 });
  return {
    t,
    seg: segmentPath(t, 1),
    lines: readLines(segmentPath(t, 1)),
    pub: join(t.keyDir, PUBLIC_KEY_FILE),
  };
}

/** Only the public key, somewhere else: what an auditor gets. */
function auditorCopy(t: TempLog, pub: string): string {
  const dir = join(t.root, "auditor");
  Deno.mkdirSync(dir);
  Deno.copyFileSync(pub, join(dir, PUBLIC_KEY_FILE));
  return join(dir, PUBLIC_KEY_FILE);
}

Deno.test("audit signatures: every seal is signed; the public key alone verifies the log", async () => {
  const { t, lines, pub } = await sealedLog();
  try {
    const seals = lines.map((l) => JSON.parse(l) as AuditRecord).filter((r) =>
      r.event.class === "audit" && r.event.activity === "seal"
    );
    assert.ok(seals.length >= 4);
    for (const s of seals) {
      assert.ok(s.event.class === "audit" && s.event.activity === "seal");
      assert.equal(s.event.sig_alg, "Ed25519");
      assert.match(s.event.sig!, /^[A-Za-z0-9+/]{86}==$/);
    }
    const mode = Deno.statSync(join(t.keyDir, SIGN_KEY_FILE)).mode! & 0o777;
    assert.equal(mode, 0o600);
    assert.equal(Deno.statSync(pub).mode! & 0o777, 0o644);
    const r = verifyLog(t.dir, undefined, auditorCopy(t, pub));
    assert.equal(r.broken, null);
    assert.equal(r.seals.signatures_verified, seals.length);
    assert.equal(r.seals.verified, 0);
    assert.ok(r.notes.some((n) => /MACs were not checked/.test(n)));
    // The CLI says the same.
    const out = await cli(["audit", "verify", "--pubkey", pub, t.dir]);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.match(
      out.stdout,
      /signatures verified with public key [0-9a-f]{16}, sealed head matches/,
    );
  } finally {
    cleanup(t);
  }
});

Deno.test("audit signatures: a forgery by someone who holds the HMAC key fails the signatures", async () => {
  const { t, seg, lines, pub } = await sealedLog();
  try {
    // Change record 60, re-hash everything after it and recompute every seal's MAC with the
    // real HMAC key: only the Ed25519 signatures are left as they were.
    const key = readKey(t.keyFile);
    const logId = (JSON.parse(lines[0]) as AuditRecord).event;
    assert.ok(logId.class === "audit" && logId.activity === "segment");
    const out: string[] = lines.slice(0, 59);
    let prev = lineHash(out[out.length - 1]);
    for (let i = 59; i < lines.length; i++) {
      const r = JSON.parse(lines[i]) as AuditRecord;
      r.prev = prev;
      if (i === 59 && r.event.class === "http") r.event.http.url = "https://innocent.example/";
      if (r.event.class === "audit" && r.event.activity === "seal") {
        r.event.head = prev;
        r.event.mac = sealMac(key, logId.log_id, r.seq, r.time, prev);
      }
      out.push(recordLine(r));
      prev = lineHash(out[out.length - 1]);
    }
    writeLines(seg, out);
    // Holding the key directory, they also move the sealed head to their last seal: the HMAC
    // check is fooled entirely (the limit of a shared secret) ...
    const headFile = join(t.keyDir, `head-${logId.log_id}.json`);
    const head = JSON.parse(Deno.readTextFileSync(headFile));
    const at = out.findIndex((l) => (JSON.parse(l) as AuditRecord).seq === head.seq);
    head.hash = lineHash(out[at]);
    Deno.writeTextFileSync(headFile, JSON.stringify(head));
    assert.equal(verifyLog(t.dir, t.keyFile).broken, null, "every MAC checks out");
    // ... the signatures are not.
    const r = verifyLog(t.dir, undefined, auditorCopy(t, pub));
    assert.equal(r.broken?.kind, "seal");
    assert.match(r.broken!.message, /seal seq \d+ has a wrong signature/);
    assert.ok(r.broken!.seq! > 60, "the first seal after the change");
    const out2 = await cli(["audit", "verify", "--pubkey", pub, t.dir]);
    assert.equal(out2.code, 1);
    assert.match(out2.stdout, /^BROKEN: .*seal: seal seq \d+ has a wrong signature/);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit signatures: unsigned seals and another key's signatures are refused", async () => {
  const { t, seg, lines, pub } = await sealedLog();
  try {
    // Strip the signature from the last seal (the last line: nothing links to it).
    const last = JSON.parse(lines[lines.length - 1]) as AuditRecord;
    assert.ok(last.event.class === "audit" && last.event.activity === "seal");
    delete last.event.sig;
    writeLines(seg, [...lines.slice(0, -1), recordLine(last)]);
    const r = verifyLog(segmentPath(t, 1), undefined, pub);
    assert.equal(r.broken?.kind, "seal");
    assert.match(r.broken!.message, /is not signed/);
    // Another log's public key.
    const other = tempLog();
    try {
      await writeLog(other, 1);
      const r2 = verifyLog(t.dir, undefined, join(other.keyDir, PUBLIC_KEY_FILE));
      assert.equal(r2.broken?.kind, "seal");
      assert.match(r2.broken!.message, /was signed with key [0-9a-f]{16}, not [0-9a-f]{16}/);
    } finally {
      cleanup(other);
    }
  } finally {
    cleanup(t);
  }
});

Deno.test("audit signatures: a signing key that others can read is refused", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 1);
    Deno.chmodSync(join(t.keyDir, SIGN_KEY_FILE), 0o644);
    await assert.rejects(
      AuditLog.open(t.dir, { keyDir: t.keyDir }),
      (e: Error) => e instanceof AuditOpenError && /signing key .* has mode 644/.test(e.message),
    );
  } finally {
    cleanup(t);
  }
});
