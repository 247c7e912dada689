// NETLINK_SOCK_DIAG (inet_diag): looks up one TCP socket by its exact address tuple and returns
// its inode and owner uid. One request, one answer, no dump: microseconds, where reading
// /proc/net/tcp costs milliseconds once a namespace holds a few hundred sockets.
// Thin: no policy here. The socket is opened once (callers may open it before a seccomp filter
// that forbids creating netlink sockets other than NETLINK_ROUTE) and reused.

import { lastErrno, OsError } from "./libc.ts";

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

const AF_NETLINK = 16, AF_INET = 2, AF_INET6 = 10, IPPROTO_TCP = 6;
const SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000, NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20, NLMSG_ERROR = 2, NLM_F_REQUEST = 1;
const MSG_DONTWAIT = 0x40;
const ENOENT = 2;
/** All TCP states. */
const ALL_STATES = 0xffffffff;

export interface TcpEnd {
  /** IPv4 dotted quad or IPv6 text. */
  address: string;
  port: number;
}

export interface DiagSocket {
  inode: number;
  uid: number;
}

function addressBytes(address: string, family: number): Uint8Array | null {
  if (family === AF_INET) {
    const parts = address.split(".").map(Number);
    if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) return null;
    return new Uint8Array(parts);
  }
  const v4 = /^(?:::ffff:)?(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const out = new Uint8Array(16);
  if (v4) {
    // IPv4-mapped, as a dual-stack socket holds an IPv4 peer.
    const b = addressBytes(v4[1], AF_INET);
    if (!b) return null;
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(b, 12);
    return out;
  }
  const [head, tail] = address.includes("::") ? address.split("::") : [address, null];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  if (tail === null && h.length !== 8) return null;
  const groups = [...h, ...new Array(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8) return null;
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 255;
  });
  return out;
}

export class SockDiag {
  #fd: number;
  #seq = 1;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Opens a NETLINK_SOCK_DIAG socket (close-on-exec). */
  static open(): SockDiag {
    const fd = libc().socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) throw new OsError("socket(NETLINK_SOCK_DIAG)", lastErrno());
    return new SockDiag(fd);
  }

  /**
   * The TCP socket whose local end is `local` and remote end is `remote`, in the network
   * namespace the netlink socket was opened in; null when there is none.
   */
  tcpLookup(local: TcpEnd, remote: TcpEnd): DiagSocket | null {
    const v4 = !local.address.includes(":") && !remote.address.includes(":");
    // An IPv4 connection may belong to a dual-stack (AF_INET6) socket: ask both ways.
    for (const family of v4 ? [AF_INET, AF_INET6] : [AF_INET6]) {
      const src = addressBytes(local.address, family);
      const dst = addressBytes(remote.address, family);
      if (!src || !dst) continue;
      const found = this.#query(family, local.port, src, remote.port, dst);
      if (found) return found;
    }
    return null;
  }

  #query(
    family: number,
    sport: number,
    src: Uint8Array,
    dport: number,
    dst: Uint8Array,
  ): DiagSocket | null {
    // struct nlmsghdr (16) + struct inet_diag_req_v2 (56)
    const req = new Uint8Array(72);
    const v = new DataView(req.buffer);
    const seq = this.#seq++;
    v.setUint32(0, req.length, true);
    v.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
    v.setUint16(6, NLM_F_REQUEST, true);
    v.setUint32(8, seq, true);
    req[16] = family;
    req[17] = IPPROTO_TCP;
    v.setUint32(20, ALL_STATES, true);
    // struct inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if, cookie[2]
    v.setUint16(24, sport, false);
    v.setUint16(26, dport, false);
    req.set(src, 28);
    req.set(dst, 44);
    v.setUint32(64, 0xffffffff, true); // INET_DIAG_NOCOOKIE
    v.setUint32(68, 0xffffffff, true);
    if (Number(libc().send(this.#fd, req, BigInt(req.length), 0)) !== req.length) {
      throw new OsError("send(NETLINK_SOCK_DIAG)", lastErrno());
    }
    const buf = new Uint8Array(8192);
    const rv = new DataView(buf.buffer);
    for (;;) {
      const n = Number(libc().recv(this.#fd, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n < 0) throw new OsError("recv(NETLINK_SOCK_DIAG)", lastErrno());
      if (n < 16) return null;
      if (rv.getUint32(8, true) !== seq) continue; // a stale answer
      const type = rv.getUint16(4, true);
      if (type === NLMSG_ERROR) {
        const err = -rv.getInt32(16, true);
        if (err === ENOENT || err === 0) return null;
        throw new OsError("inet_diag", err);
      }
      if (type !== SOCK_DIAG_BY_FAMILY || n < 16 + 72) return null;
      // struct inet_diag_msg: ... idiag_uid at 64, idiag_inode at 68
      return { uid: rv.getUint32(16 + 64, true), inode: rv.getUint32(16 + 68, true) };
    }
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
}
