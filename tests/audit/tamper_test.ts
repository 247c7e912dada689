// Tampering with a real log, each way the issue names, must be detected by verify.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { lineHash, recordLine } from "../../core/audit/chain.ts";
import type { AuditRecord } from "../../core/audit/events.ts";
import { verifyLog } from "../../core/audit/verify.ts";
import {
  cleanup,
  readLines,
  segmentPath,
  type TempLog,
  tempLog,
  writeLines,
  writeLog,
} from "./helpers.ts";

/** A closed log of 200 events in one segment, sealed every 50 records. */
async function sealedLog(): Promise<{ t: TempLog; seg: string; lines: string[] }> {
  const t = tempLog();
  await writeLog(t, 200, { sealEveryRecords: 50 });
  const seg = segmentPath(t, 1);
  return { t, seg, lines: readLines(seg) };
}

Deno.test("audit verify: an untouched log is intact, every seal checked with the key", async () => {
  const { t, lines } = await sealedLog();
  try {
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.broken, null);
    assert.equal(r.ok, true);
    assert.equal(r.records, lines.length);
    assert.equal(r.first_seq, 1);
    assert.equal(r.last_seq, lines.length);
    assert.ok(r.seals.verified >= 5, `seals verified: ${r.seals.verified}`);
    assert.equal(r.unsealed_tail, 0);
    assert.equal(r.sealed_head, "match");
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: one edited byte is found at that record", async () => {
  const { t, seg, lines } = await sealedLog();
  try {
    const i = 100; // seq 101
    assert.ok(lines[i].includes("/v1/items/"));
    lines[i] = lines[i].replace("/v1/items/", "/v1/itemz/");
    writeLines(seg, lines);
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.ok, false);
    assert.equal(r.broken?.kind, "edited");
    assert.equal(r.broken?.seq, 101);
    assert.equal(r.broken?.line, 101);
    assert.equal(r.broken?.file, "audit-000001.jsonl");
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: a deleted line is found where the sequence jumps", async () => {
  const { t, seg, lines } = await sealedLog();
  try {
    lines.splice(60, 1); // removes seq 61
    writeLines(seg, lines);
    const r = verifyLog(t.dir);
    assert.equal(r.broken?.kind, "sequence");
    assert.equal(r.broken?.seq, 62);
    assert.match(r.broken!.message, /seq 62 follows seq 60/);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: two swapped lines are found", async () => {
  const { t, seg, lines } = await sealedLog();
  try {
    [lines[30], lines[31]] = [lines[31], lines[30]];
    writeLines(seg, lines);
    const r = verifyLog(t.dir);
    assert.equal(r.broken?.kind, "sequence");
    assert.equal(r.broken?.seq, 32);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: truncation to an earlier seal is caught by the sealed head", async () => {
  const { t, seg, lines } = await sealedLog();
  try {
    // Cut right after an earlier seal: the remaining chain and seals are all valid by themselves.
    const sealIdx = lines.findIndex((l, i) => i > 80 && l.includes('"activity":"seal"'));
    assert.ok(sealIdx > 0);
    writeLines(seg, lines.slice(0, sealIdx + 1));
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.ok, false);
    assert.equal(r.broken?.kind, "truncated");
    assert.equal(r.broken?.seq, lines.length);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: a cut in the middle of a line is reported as torn", async () => {
  const { t, seg, lines } = await sealedLog();
  try {
    const text = lines.slice(0, 150).map((l) => l + "\n").join("") + lines[150].slice(0, 40);
    Deno.writeTextFileSync(seg, text);
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.ok, false);
    assert.equal(r.broken?.kind, "torn");
    assert.equal(r.broken?.seq, 151);
    assert.match(r.broken!.message, /150 records before it are intact/);
  } finally {
    cleanup(t);
  }
});

/** Replaces everything after `keep` lines with `n` re-hashed forged events (no key needed). */
function forgeTail(lines: string[], keep: number, n: number): string[] {
  const out = lines.slice(0, keep);
  let prevRec = JSON.parse(out[out.length - 1]) as AuditRecord;
  let prev = lineHash(out[out.length - 1]);
  for (let i = 0; i < n; i++) {
    const rec: AuditRecord = {
      seq: prevRec.seq + 1,
      time: new Date().toISOString(),
      prev,
      event: {
        class: "http",
        activity: "request",
        decision: "allow",
        dst: { host: "innocent.example", port: 443 },
        http: { method: "GET", url: "https://innocent.example/" },
      },
    };
    const line = recordLine(rec);
    out.push(line);
    prev = lineHash(line);
    prevRec = rec;
  }
  return out;
}

Deno.test("audit verify: a re-hashed forged tail ending in a seal made without the key fails", async () => {
  const { t, seg, lines } = await sealedLog();
  try {
    const forged = forgeTail(lines, 120, 30);
    const last = JSON.parse(forged[forged.length - 1]) as AuditRecord;
    const prev = lineHash(forged[forged.length - 1]);
    const first = JSON.parse(lines[0]) as AuditRecord;
    const logId = first.event.class === "audit" && first.event.activity === "segment"
      ? first.event.log_id
      : "";
    const time = new Date().toISOString();
    const wrongKey = new Uint8Array(32).fill(7);
    const mac = createHmac("sha256", wrongKey)
      .update(`clawcage-audit-seal-v1\n${logId}\n${last.seq + 1}\n${time}\n${prev}`)
      .digest("hex");
    const keyIdOf = JSON.parse(lines[1]).event.key_id;
    forged.push(recordLine({
      seq: last.seq + 1,
      time,
      prev,
      event: {
        class: "audit",
        activity: "seal",
        alg: "HMAC-SHA256",
        key_id: keyIdOf,
        head: prev,
        mac,
      },
    }));
    writeLines(seg, forged);
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.ok, false);
    assert.equal(r.broken?.kind, "seal");
    assert.equal(r.broken?.seq, last.seq + 1);
    assert.match(r.broken!.message, /wrong MAC/);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: a re-hashed forged tail without a seal fails the sealed-head check", async () => {
  const { t, seg, lines } = await sealedLog();
  try {
    // As long as the original: the forger hopes nobody notices that the last seal is gone.
    writeLines(seg, forgeTail(lines, 120, lines.length - 120));
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.ok, false);
    assert.equal(r.broken?.kind, "truncated");
    assert.match(r.broken!.message, /not the seal the sealed head recorded/);
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: a seal checked with another key fails", async () => {
  const { t } = await sealedLog();
  const other = tempLog();
  try {
    await writeLog(other, 1);
    const r = verifyLog(t.dir, other.keyFile);
    assert.equal(r.broken?.kind, "seal");
    assert.match(r.broken!.message, /made with key/);
  } finally {
    cleanup(t);
    cleanup(other);
  }
});

Deno.test("audit verify: rotation keeps one chain; removing a middle or first segment is found", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 400, { rotateBytes: 8000 });
    const files = [...Deno.readDirSync(t.dir)].filter((e) => e.name.endsWith(".jsonl"));
    assert.ok(files.length >= 4, `segments: ${files.length}`);
    const ok = verifyLog(t.dir, t.keyFile);
    assert.equal(ok.broken, null);
    assert.equal(ok.files, files.length);
    assert.equal(ok.first_seq, 1);

    // The first line of segment 3 links to the last line of segment 2.
    const prevLast = readLines(segmentPath(t, 2)).at(-1)!;
    const first = JSON.parse(readLines(segmentPath(t, 3))[0]) as AuditRecord;
    assert.equal(first.prev, lineHash(prevLast));

    Deno.renameSync(segmentPath(t, 2), `${t.root}/moved.jsonl`);
    const mid = verifyLog(t.dir, t.keyFile);
    assert.equal(mid.broken?.kind, "sequence");
    assert.equal(mid.broken?.file, "audit-000003.jsonl");
    Deno.renameSync(`${t.root}/moved.jsonl`, segmentPath(t, 2));

    Deno.removeSync(segmentPath(t, 1));
    const start = verifyLog(t.dir, t.keyFile);
    assert.equal(start.broken?.kind, "start");
  } finally {
    cleanup(t);
  }
});

Deno.test("audit verify: retention removes old segments and records it; the rest verifies", async () => {
  const t = tempLog();
  try {
    await writeLog(t, 400, { rotateBytes: 8000, maxFiles: 2 });
    const files = [...Deno.readDirSync(t.dir)].filter((e) => e.name.endsWith(".jsonl"));
    assert.equal(files.length, 2);
    const r = verifyLog(t.dir, t.keyFile);
    assert.equal(r.broken, null);
    assert.ok(r.first_seq! > 1);
    assert.ok(r.notes.some((n) => /removed by retention/.test(n)));
  } finally {
    cleanup(t);
  }
});
