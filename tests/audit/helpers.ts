// Shared by the audit tests: a log written by the real writer in a fresh temporary directory.

import { join } from "node:path";
import type { HttpActivity } from "../../core/audit/events.ts";
import { AuditLog, type AuditLogOptions } from "../../core/audit/writer.ts";
import { kernelAuditOn } from "../../core/audit/kernel_audit_lease.ts";

export interface TempLog {
  root: string;
  dir: string;
  keyDir: string;
  keyFile: string;
}

export function tempLog(): TempLog {
  const root = Deno.makeTempDirSync({ prefix: "clawcage-audit-test-" });
  const keyDir = join(root, "key");
  return { root, dir: join(root, "log"), keyDir, keyFile: join(keyDir, "audit.key") };
}

export function httpEvent(i: number): HttpActivity {
  return {
    class: "http",
    activity: "request",
    sandbox: `sb-${i % 3}`,
    decision: i % 5 === 0 ? "deny" : "allow",
    dst: { host: i % 2 ? "api.example.com" : "pypi.org", port: 443 },
    http: { method: "GET", url: `https://api.example.com/v1/items/${i}` },
  };
}

/** Writes `n` events through a real AuditLog and closes it. */
export async function writeLog(
  t: TempLog,
  n: number,
  options: Partial<AuditLogOptions> = {},
): Promise<void> {
  const log = await AuditLog.open(t.dir, { keyDir: t.keyDir, ...options });
  for (let i = 0; i < n; i++) {
    log.record(httpEvent(i));
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 0));
  }
  await log.close();
}

export function segmentPath(t: TempLog, index: number): string {
  return join(t.dir, `audit-${String(index).padStart(6, "0")}.jsonl`);
}

export function readLines(path: string): string[] {
  const text = Deno.readTextFileSync(path);
  return text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
}

export function writeLines(path: string, lines: string[]): void {
  Deno.writeTextFileSync(path, lines.map((l) => l + "\n").join(""));
}

export function cleanup(t: TempLog): void {
  Deno.removeSync(t.root, { recursive: true });
}

/** Why kernel auditing cannot be read and set here (root and an audit netlink socket), or null. */
export async function kernelAuditProblem(): Promise<string | null> {
  if (Deno.uid() !== 0) return "needs root (CAP_AUDIT_CONTROL)";
  try {
    await kernelAuditOn();
  } catch (e) {
    return `kernel audit netlink unusable: ${(e as Error).message}`;
  }
  return null;
}
