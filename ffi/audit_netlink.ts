// Thin binding for the kernel audit netlink socket (NETLINK_AUDIT): status get/set and reading
// audit records from the read-only multicast group. Needs CAP_AUDIT_READ (group) and
// CAP_AUDIT_CONTROL (status set). No interpretation of records here: callers parse the text.

import { lastErrno, strerror } from "./libc.ts";

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  getpid: { parameters: [], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

const AF_NETLINK = 16, SOCK_RAW = 3, SOCK_CLOEXEC = 0o2000000, SOCK_NONBLOCK = 0o4000;
const NETLINK_AUDIT = 9, SOL_SOCKET = 1, SO_RCVBUFFORCE = 33;
const NLM_F_REQUEST = 1, NLM_F_ACK = 4;
const NLMSG_ERROR = 2;
const EAGAIN = 11, EINTR = 4;

/** Message types used here (linux/audit.h). */
export const AUDIT = {
  GET: 1000,
  SET: 1001,
  SYSCALL: 1300,
  LANDLOCK_ACCESS: 1423,
  LANDLOCK_DOMAIN: 1424,
  STATUS_ENABLED: 1,
  /** Multicast group for read-only listeners (AUDIT_NLGRP_READLOG). */
  NLGRP_READLOG: 1,
} as const;

export class NetlinkError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${strerror(errno)} (errno ${errno})`);
  }
}

export interface AuditMessage {
  type: number;
  /** The payload; for records, text such as `audit(1700000000.123:45): domain=... ...`. */
  data: Uint8Array;
}

const decoder = new TextDecoder();
export function messageText(m: AuditMessage): string {
  let end = m.data.length;
  while (end > 0 && m.data[end - 1] === 0) end--;
  return decoder.decode(m.data.subarray(0, end));
}

export interface AuditStatus {
  enabled: number;
  failure: number;
  pid: number;
  lost: number;
  backlog: number;
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class AuditSocket {
  #seq = 1;
  #closed = false;
  private constructor(readonly fd: number) {}

  /**
   * Opens a non-blocking NETLINK_AUDIT socket; `groups` is a bitmask (1 << (NLGRP_READLOG - 1)
   * to listen to every record). receive() never blocks: callers poll.
   */
  static open(groups = 0): AuditSocket {
    const fd = libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_AUDIT);
    if (fd < 0) throw new NetlinkError("socket(NETLINK_AUDIT)", lastErrno());
    const addr = new Uint8Array(12);
    const v = new DataView(addr.buffer);
    v.setUint16(0, AF_NETLINK, true);
    v.setUint32(8, groups, true);
    if (libc().bind(fd, addr, 12) !== 0) {
      const e = lastErrno();
      libc().close(fd);
      throw new NetlinkError("bind(NETLINK_AUDIT)", e);
    }
    // A large receive buffer (best effort) so bursts of records wait for the next poll.
    libc().setsockopt(
      fd,
      SOL_SOCKET,
      SO_RCVBUFFORCE,
      new Uint8Array(new Int32Array([8 << 20]).buffer),
      4,
    );
    return new AuditSocket(fd);
  }

  #send(type: number, payload: Uint8Array, flags = NLM_F_REQUEST | NLM_F_ACK): number {
    const len = 16 + payload.length;
    const buf = new Uint8Array((len + 3) & ~3);
    const v = new DataView(buf.buffer);
    const seq = this.#seq++;
    v.setUint32(0, len, true);
    v.setUint16(4, type, true);
    v.setUint16(6, flags, true);
    v.setUint32(8, seq, true);
    v.setUint32(12, 0, true);
    buf.set(payload, 16);
    const dst = new Uint8Array(12);
    new DataView(dst.buffer).setUint16(0, AF_NETLINK, true);
    const n = libc().sendto(this.fd, buf, BigInt(buf.length), 0, dst, 12);
    if (Number(n) < 0) throw new NetlinkError("sendto(NETLINK_AUDIT)", lastErrno());
    return seq;
  }

  /** Receives one datagram's messages; [] when none is waiting. Negative acks throw. */
  receive(): AuditMessage[] {
    const buf = new Uint8Array(1 << 16);
    const n = Number(libc().recv(this.fd, buf, BigInt(buf.length), 0));
    if (n < 0) {
      const e = lastErrno();
      if (e === EAGAIN || e === EINTR || this.#closed) return [];
      throw new NetlinkError("recv(NETLINK_AUDIT)", e);
    }
    const out: AuditMessage[] = [];
    const v = new DataView(buf.buffer, 0, n);
    let off = 0;
    while (off + 16 <= n) {
      const len = v.getUint32(off, true);
      const type = v.getUint16(off + 4, true);
      if (len < 16 || off + len > n) break;
      if (type === NLMSG_ERROR) {
        const err = -v.getInt32(off + 16, true);
        if (err !== 0) throw new NetlinkError("audit netlink request", err);
        out.push({ type, data: buf.slice(off + 16, off + len) }); // an acknowledgement
      } else {
        out.push({ type, data: buf.slice(off + 16, off + len) });
      }
      off += (len + 3) & ~3;
    }
    return out;
  }

  /** AUDIT_GET: the kernel's audit status. */
  async status(): Promise<AuditStatus> {
    this.#send(AUDIT.GET, new Uint8Array(0), NLM_F_REQUEST);
    for (let i = 0; i < 1000; i++) {
      await pause(1);
      for (const m of this.receive()) {
        if (m.type !== AUDIT.GET || m.data.length < 32) continue;
        // struct audit_status { u32 mask, enabled, failure, pid, rate_limit, backlog_limit,
        //                       lost, backlog; ... }
        const v = new DataView(m.data.buffer, m.data.byteOffset, m.data.length);
        return {
          enabled: v.getUint32(4, true),
          failure: v.getUint32(8, true),
          pid: v.getUint32(12, true),
          lost: v.getUint32(24, true),
          backlog: v.getUint32(28, true),
        };
      }
    }
    throw new Error("no reply to AUDIT_GET");
  }

  /** AUDIT_SET enabled=1|0 (CAP_AUDIT_CONTROL). Resolves when the kernel acknowledges. */
  async setEnabled(enabled: boolean): Promise<void> {
    const st = new Uint8Array(44);
    const v = new DataView(st.buffer);
    v.setUint32(0, AUDIT.STATUS_ENABLED, true);
    v.setUint32(4, enabled ? 1 : 0, true);
    this.#send(AUDIT.SET, st);
    for (let i = 0; i < 1000; i++) {
      await pause(1);
      const msgs = this.receive(); // a negative ack throws here
      if (msgs.some((m) => m.type === NLMSG_ERROR)) return;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.fd);
  }
}
