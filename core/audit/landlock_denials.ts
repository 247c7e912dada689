// File-access denials from the kernel: Landlock (ABI 7+) reports each denied access to the audit
// subsystem as an AUDIT_LANDLOCK_ACCESS record, followed by the AUDIT_SYSCALL record of the same
// event (pid, exe) and, once per domain, AUDIT_LANDLOCK_DOMAIN (the pid that created it). This
// reads them from the audit netlink multicast group (root: CAP_AUDIT_READ) and turns fs.* denials
// into file events for the sandbox whose stage created the domain.
//
// The kernel only emits them while audit is enabled (`auditctl -e 1`, or an audit daemon). When
// it is off, start() enables it only if told to (`enableAudit`); the last reader to stop turns it
// off again, also after a crashed one (kernel_audit_lease.ts).

import { AUDIT, type AuditMessage, AuditSocket, messageText } from "../../ffi/audit_netlink.ts";
import type { FileActivity } from "./events.ts";
import { KernelAuditLease } from "./kernel_audit_lease.ts";

export interface DenialReaderOptions {
  /** Called for each denial, in kernel order. */
  onDenial: (event: FileActivity) => void;
  /** Which sandbox a Landlock domain belongs to, given the pid that created the domain. */
  sandboxForPid?: (pid: number) => string | undefined;
  /** Turn kernel auditing on if it is off (and off again when the last reader stops). */
  enableAudit?: boolean;
  /** Where readers register (kernel_audit_lease.ts); tests use their own. */
  stateDir?: string;
  pollMs?: number;
}

export class DenialReaderError extends Error {}

/** `key=value key="quoted value"` fields of an audit record; unquoted hex strings decoded. */
export function auditFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const body = text.replace(/^audit\([^)]*\):\s*/, "");
  for (const m of body.matchAll(/([\w-]+)=("([^"]*)"|\S*)/g)) {
    out.set(m[1], m[3] ?? m[2]);
  }
  return out;
}

/** Untrusted strings (paths, exe) come either quoted or hex-encoded. */
function untrusted(fields: Map<string, string>, key: string, text: string): string | undefined {
  const v = fields.get(key);
  if (v === undefined) return undefined;
  if (text.includes(`${key}="`)) return v;
  if (/^([0-9A-F]{2})+$/.test(v)) return new TextDecoder().decode(Buffer.from(v, "hex"));
  return v;
}

function serialOf(text: string): string | null {
  return /^audit\(([\d.]+:\d+)\)/.exec(text)?.[1] ?? null;
}

const ACTIVITY: Record<string, FileActivity["activity"]> = {
  "fs.read_file": "read",
  "fs.read_dir": "read",
  "fs.write_file": "write",
  "fs.truncate": "write",
  "fs.execute": "execute",
  "fs.remove_file": "delete",
  "fs.remove_dir": "delete",
  "fs.make_reg": "create",
  "fs.make_dir": "create",
  "fs.make_sym": "create",
  "fs.make_sock": "create",
  "fs.make_fifo": "create",
  "fs.make_char": "create",
  "fs.make_block": "create",
};

export class LandlockDenialReader {
  #socket: AuditSocket;
  #timer: ReturnType<typeof setInterval> | null = null;
  #lease: KernelAuditLease | null = null;
  #domains = new Map<string, string | undefined>(); // domain id -> sandbox
  #pending: { serial: string; access: Map<string, string>; text: string } | null = null;
  #opt: DenialReaderOptions;
  /** Denials read so far, and records of other Landlock kinds (net.*, scope.*) not turned into events. */
  readonly counts = { denials: 0, ignored: 0 };

  private constructor(socket: AuditSocket, opt: DenialReaderOptions) {
    this.#socket = socket;
    this.#opt = opt;
  }

  /** Starts reading; throws DenialReaderError when this host cannot deliver the records. */
  static async start(opt: DenialReaderOptions): Promise<LandlockDenialReader> {
    let listen: AuditSocket;
    try {
      listen = AuditSocket.open(1 << (AUDIT.NLGRP_READLOG - 1));
    } catch (e) {
      throw new DenialReaderError(
        `cannot read kernel audit records (${(e as Error).message}); needs root (CAP_AUDIT_READ)`,
      );
    }
    const reader = new LandlockDenialReader(listen, opt);
    try {
      reader.#lease = await KernelAuditLease.acquire({
        enable: opt.enableAudit ?? false,
        dir: opt.stateDir,
      });
    } catch (e) {
      listen.close();
      throw new DenialReaderError(
        `cannot query or set kernel audit status: ${(e as Error).message}`,
      );
    }
    if (reader.#lease === null) {
      listen.close();
      throw new DenialReaderError(
        "kernel auditing is off, so Landlock denials are not reported " +
          "(enable it with `auditctl -e 1`, or set the policy's audit.kernel_denials: enable)",
      );
    }
    reader.#timer = setInterval(() => reader.poll(), opt.pollMs ?? 100);
    return reader;
  }

  /** Reads what the kernel has queued now (also called by the timer). */
  poll(): void {
    for (;;) {
      const msgs = this.#socket.receive();
      if (msgs.length === 0) break;
      for (const m of msgs) this.#handle(m);
    }
  }

  #handle(m: AuditMessage): void {
    const text = messageText(m);
    const serial = serialOf(text);
    if (m.type === AUDIT.LANDLOCK_DOMAIN) {
      const f = auditFields(text);
      const domain = f.get("domain");
      const pid = Number(f.get("pid"));
      if (domain && f.get("status") === "allocated") {
        this.#domains.set(
          domain,
          Number.isFinite(pid) ? this.#opt.sandboxForPid?.(pid) : undefined,
        );
      }
      return;
    }
    if (m.type === AUDIT.LANDLOCK_ACCESS) {
      this.#flush();
      this.#pending = serial ? { serial, access: auditFields(text), text } : null;
      return;
    }
    if (m.type === AUDIT.SYSCALL && this.#pending && serial === this.#pending.serial) {
      this.#emit(this.#pending, auditFields(text), text);
      this.#pending = null;
      return;
    }
    // Other records of the same event (PROCTITLE, EOE) or unrelated ones: emit what we have once
    // the event is over.
    if (this.#pending && serial !== this.#pending.serial) this.#flush();
  }

  #flush(): void {
    if (this.#pending) this.#emit(this.#pending, null, "");
    this.#pending = null;
  }

  #emit(
    p: { access: Map<string, string>; text: string },
    sys: Map<string, string> | null,
    sysText: string,
  ): void {
    const blockers = (p.access.get("blockers") ?? "").split(",").filter(Boolean);
    const path = untrusted(p.access, "path", p.text);
    if (!blockers.some((b) => b.startsWith("fs.")) || path === undefined) {
      this.counts.ignored++;
      return;
    }
    this.counts.denials++;
    const domain = p.access.get("domain");
    const sandbox = domain ? this.#domains.get(domain) : undefined;
    const pid = sys ? Number(sys.get("pid")) : NaN;
    const uid = sys ? Number(sys.get("uid")) : NaN;
    const exe = sys ? untrusted(sys, "exe", sysText) : undefined;
    const event: FileActivity = {
      class: "file",
      activity: ACTIVITY[blockers[0]] ?? "other",
      decision: "deny",
      reason: `landlock domain ${domain ?? "?"}`,
      file: { path, access: blockers },
      ...(sandbox ? { sandbox } : {}),
    };
    if (sys) {
      event.actor = {
        ...(Number.isFinite(pid) ? { pid } : {}),
        ...(exe ? { exe } : {}),
        ...(Number.isFinite(uid) ? { uid } : {}),
      };
    }
    this.#opt.onDenial(event);
  }

  /** Stops reading; the last reader turns kernel auditing off again if clawcage turned it on. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.poll();
    this.#flush();
    this.#socket.close();
    await this.#lease?.release();
    this.#lease = null;
  }
}
