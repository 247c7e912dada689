// Thin binding for the kernel's process events connector (NETLINK_CONNECTOR, CN_IDX_PROC): fork,
// exec and exit of every process on the host, as they happen. Needs CAP_NET_ADMIN (root) and a
// kernel with CONFIG_PROC_EVENTS. Non-blocking: callers poll receive().

import { lastErrno, strerror } from "./libc.ts";

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  /** On a worker thread: waits for the socket to become readable without blocking JS. */
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  getpid: { parameters: [], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

const AF_NETLINK = 16, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000, SOCK_NONBLOCK = 0o4000;
const NETLINK_CONNECTOR = 11, CN_IDX_PROC = 1, CN_VAL_PROC = 1;
const SOL_SOCKET = 1, SO_RCVBUFFORCE = 33;
const NLMSG_DONE = 3, PROC_CN_MCAST_LISTEN = 1, PROC_CN_MCAST_IGNORE = 2;
const EAGAIN = 11, EINTR = 4, ENOBUFS = 105;

export const PROC_EVENT = { FORK: 0x1, EXEC: 0x2, EXIT: 0x80000000 } as const;

export class ProcConnectorError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${strerror(errno)} (errno ${errno})`);
  }
}

export type ProcEvent =
  | { what: "fork"; parentTgid: number; childPid: number; childTgid: number }
  | { what: "exec"; pid: number; tgid: number }
  | { what: "exit"; pid: number; tgid: number }
  /** The kernel dropped events (the socket's buffer overflowed). */
  | { what: "lost" };

export class ProcConnector {
  #closed = false;
  private constructor(readonly fd: number) {}

  /** Subscribes to process events; throws ProcConnectorError (EPERM without CAP_NET_ADMIN). */
  static open(): ProcConnector {
    const fd = libc().socket(
      AF_NETLINK,
      SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
      NETLINK_CONNECTOR,
    );
    if (fd < 0) throw new ProcConnectorError("socket(NETLINK_CONNECTOR)", lastErrno());
    const pc = new ProcConnector(fd);
    try {
      const addr = new Uint8Array(12);
      const v = new DataView(addr.buffer);
      v.setUint16(0, AF_NETLINK, true);
      v.setUint32(8, CN_IDX_PROC, true);
      if (libc().bind(fd, addr, 12) !== 0) throw new ProcConnectorError("bind", lastErrno());
      libc().setsockopt(
        fd,
        SOL_SOCKET,
        SO_RCVBUFFORCE,
        new Uint8Array(new Int32Array([8 << 20]).buffer),
        4,
      );
      pc.#control(PROC_CN_MCAST_LISTEN);
    } catch (e) {
      libc().close(fd);
      throw e;
    }
    return pc;
  }

  #control(op: number): void {
    // nlmsghdr (16) + cn_msg (20: idx, val, seq, ack, len u16, flags u16) + op (u32)
    const buf = new Uint8Array(40);
    const v = new DataView(buf.buffer);
    v.setUint32(0, 40, true);
    v.setUint16(4, NLMSG_DONE, true);
    v.setUint32(12, libc().getpid(), true);
    v.setUint32(16, CN_IDX_PROC, true);
    v.setUint32(20, CN_VAL_PROC, true);
    v.setUint16(32, 4, true);
    v.setUint32(36, op, true);
    if (Number(libc().send(this.fd, buf, 40n, 0)) < 0) {
      throw new ProcConnectorError("send(PROC_CN_MCAST)", lastErrno());
    }
  }

  /** Resolves when events are waiting, or after `timeoutMs`. */
  async wait(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    const pfd = new Uint8Array(8); // struct pollfd { int fd; short events; short revents; }
    const v = new DataView(pfd.buffer);
    v.setInt32(0, this.fd, true);
    v.setInt16(4, 1, /* POLLIN */ true);
    await libc().poll(pfd, 1n, timeoutMs);
  }

  /** The events waiting now (possibly none). */
  receive(): ProcEvent[] {
    const out: ProcEvent[] = [];
    const buf = new Uint8Array(1 << 16);
    for (;;) {
      const n = Number(libc().recv(this.fd, buf, BigInt(buf.length), 0));
      if (n < 0) {
        const e = lastErrno();
        if (e === EINTR) continue;
        if (e === EAGAIN || this.#closed) return out;
        if (e === ENOBUFS) {
          out.push({ what: "lost" });
          continue;
        }
        throw new ProcConnectorError("recv(NETLINK_CONNECTOR)", e);
      }
      const v = new DataView(buf.buffer, 0, n);
      let off = 0;
      while (off + 16 <= n) {
        const len = v.getUint32(off, true);
        if (len < 16 || off + len > n) break;
        // cn_msg at off+16; proc_event at off+36: what u32, cpu u32, timestamp u64, data
        const ev = off + 36;
        if (len >= 36 + 16 + 8) {
          const what = v.getUint32(ev, true);
          const d = ev + 16;
          if (what === PROC_EVENT.FORK && len >= 36 + 16 + 16) {
            out.push({
              what: "fork",
              parentTgid: v.getInt32(d + 4, true),
              childPid: v.getInt32(d + 8, true),
              childTgid: v.getInt32(d + 12, true),
            });
          } else if (what === PROC_EVENT.EXEC) {
            out.push({ what: "exec", pid: v.getInt32(d, true), tgid: v.getInt32(d + 4, true) });
          } else if (what === PROC_EVENT.EXIT) {
            out.push({ what: "exit", pid: v.getInt32(d, true), tgid: v.getInt32(d + 4, true) });
          }
        }
        off += (len + 3) & ~3;
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    try {
      this.#control(PROC_CN_MCAST_IGNORE);
    } catch { /* closing anyway */ }
    this.#closed = true;
    libc().close(this.fd);
  }
}
