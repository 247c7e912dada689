// RFC 5424 syslog export: one message per audit record (the record's JSON line as MSG), over a
// Unix datagram socket (/dev/log), UDP (RFC 5426) or TCP with octet-counting framing (RFC 6587).

import dgram from "node:dgram";
import { UnixDatagram } from "../../../ffi/unix_dgram.ts";
import { SYSLOG_FACILITIES, type SyslogExportPolicy } from "../../policy/audit_section.ts";
import type { AuditRecord } from "../events.ts";
import { type ExportTarget, PartialExportError } from "./exporter.ts";

const SEVERITY = { warning: 4, notice: 5, info: 6 } as const;

function severity(r: AuditRecord): number {
  const e = r.event;
  if ("decision" in e && e.decision === "deny") return SEVERITY.warning;
  if (e.class === "audit") return SEVERITY.notice;
  return SEVERITY.info;
}

/** Printable US-ASCII without spaces, at most `max` characters, or "-". */
function header(s: string, max: number): string {
  const clean = s.replace(/[^\x21-\x7e]/g, "").slice(0, max);
  return clean || "-";
}

export interface SyslogFormat {
  facility: number;
  appName: string;
  hostname: string;
  procId: string;
}

export function syslogFormat(p: SyslogExportPolicy): SyslogFormat {
  let hostname = "-";
  try {
    hostname = Deno.hostname();
  } catch { /* no hostname */ }
  return {
    facility: SYSLOG_FACILITIES[p.facility],
    appName: p.app_name,
    hostname: header(hostname, 255),
    procId: String(Deno.pid),
  };
}

/**
 * `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [clawcage seq="N"] MSG` where MSGID is the
 * event type (`http.request`) and MSG the record's JSON line. The structured-data element names
 * the record's sequence number so a collector can spot gaps.
 */
export function formatSyslog(line: string, f: SyslogFormat): string {
  let rec: AuditRecord;
  try {
    rec = JSON.parse(line);
  } catch {
    return `<${
      f.facility * 8 + SEVERITY.notice
    }>1 - ${f.hostname} ${f.appName} ${f.procId} - - ${line}`;
  }
  const pri = f.facility * 8 + severity(rec);
  const msgId = header(`${rec.event.class}.${rec.event.activity}`, 32);
  return `<${pri}>1 ${header(rec.time, 64)} ${f.hostname} ${f.appName} ${f.procId} ${msgId} ` +
    `[clawcage seq="${rec.seq}"] ${line}`;
}

/** The transport named by `target` (`unix:///dev/log`, `udp://h:p`, `tcp://h:p`). */
export function syslogTarget(p: SyslogExportPolicy): ExportTarget {
  const f = syslogFormat(p);
  const m = /^(unix|udp|tcp):\/\/(.+)$/.exec(p.target)!;
  const transport = m[1] === "unix"
    ? new UnixTransport(m[2])
    : m[1] === "udp"
    ? new UdpTransport(hostPort(m[2]))
    : new TcpTransport(hostPort(m[2]));
  return {
    name: `syslog ${p.target}`,
    maxBatch: 256,
    send: (lines) => transport.send(lines.map((l) => formatSyslog(l, f))),
    close: () => transport.close(),
  };
}

function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(s.slice(i + 1)) };
}

interface Transport {
  send(messages: string[]): Promise<void>;
  close(): void;
}

const encoder = new TextEncoder();

/** Sends messages one by one; a failure reports how many went through (never resent). */
async function each(messages: string[], send: (m: string) => Promise<void>): Promise<void> {
  for (let i = 0; i < messages.length; i++) {
    try {
      await send(messages[i]);
    } catch (e) {
      throw new PartialExportError(i, e);
    }
  }
}

const EAGAIN = 11;

class UnixTransport implements Transport {
  #socket: UnixDatagram | null = null;
  constructor(readonly path: string) {}
  send(messages: string[]): Promise<void> {
    const socket = this.#socket ??= UnixDatagram.client();
    return each(messages, async (m) => {
      const bytes = encoder.encode(m);
      // A full receive queue (EAGAIN) is normal under bursts: wait for the reader, a little.
      for (let wait = 1;; wait *= 2) {
        try {
          socket.sendTo(this.path, bytes);
          return;
        } catch (e) {
          if ((e as { errno?: number }).errno !== EAGAIN || wait > 256) throw e;
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    });
  }
  close(): void {
    this.#socket?.close();
    this.#socket = null;
  }
}

class UdpTransport implements Transport {
  #socket: dgram.Socket | null = null;
  constructor(readonly to: { host: string; port: number }) {}
  async send(messages: string[]): Promise<void> {
    if (!this.#socket) {
      this.#socket = dgram.createSocket(this.to.host.includes(":") ? "udp6" : "udp4");
      this.#socket.unref();
    }
    const socket = this.#socket;
    await each(
      messages,
      (m) =>
        new Promise<void>((resolve, reject) =>
          socket.send(
            encoder.encode(m),
            this.to.port,
            this.to.host,
            (e) => e ? reject(e) : resolve(),
          )
        ),
    );
  }
  close(): void {
    this.#socket?.close();
    this.#socket = null;
  }
}

class TcpTransport implements Transport {
  #conn: Deno.TcpConn | null = null;
  constructor(readonly to: { host: string; port: number }) {}
  async send(messages: string[]): Promise<void> {
    try {
      this.#conn ??= await Deno.connect({ hostname: this.to.host, port: this.to.port });
      const frames = messages.map((m) => {
        const b = encoder.encode(m);
        return `${b.length} ${m}`;
      }).join("");
      const bytes = encoder.encode(frames);
      for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
    } catch (e) {
      // A broken connection is reopened on the next try; the batch is retried whole.
      this.close();
      throw e;
    }
  }
  close(): void {
    try {
      this.#conn?.close();
    } catch { /* already closed */ }
    this.#conn = null;
  }
}
