// Thin binding for Unix datagram sockets (AF_UNIX, SOCK_DGRAM), which Deno has no stable API
// for: the syslog socket (/dev/log) is one. Non-blocking: send() reports a full receiver queue
// as an error, receive() returns null when nothing is waiting.

import { lastErrno, strerror } from "./libc.ts";

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

const AF_UNIX = 1, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000, SOCK_NONBLOCK = 0o4000;
const EAGAIN = 11, EINTR = 4;
const SUN_PATH_MAX = 107;

export class UnixDatagramError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${strerror(errno)} (errno ${errno})`);
  }
}

function sockaddr(path: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length > SUN_PATH_MAX) {
    throw new UnixDatagramError(`socket path ${path}`, 36 /* ENAMETOOLONG */);
  }
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 2);
  return addr;
}

export class UnixDatagram {
  #closed = false;
  private constructor(readonly fd: number) {}

  static #socket(): number {
    const fd = libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw new UnixDatagramError("socket(AF_UNIX, SOCK_DGRAM)", lastErrno());
    return fd;
  }

  /** An unbound socket for sending. */
  static client(): UnixDatagram {
    return new UnixDatagram(UnixDatagram.#socket());
  }

  /** A socket bound at `path` (which must not exist), for receiving. */
  static bind(path: string): UnixDatagram {
    const fd = UnixDatagram.#socket();
    if (libc().bind(fd, sockaddr(path), 110) !== 0) {
      const e = lastErrno();
      libc().close(fd);
      throw new UnixDatagramError(`bind(${path})`, e);
    }
    return new UnixDatagram(fd);
  }

  /** Sends one datagram to the socket at `path`; throws when it cannot be sent now. */
  sendTo(path: string, data: Uint8Array<ArrayBuffer>): void {
    const addr = sockaddr(path);
    for (;;) {
      const n = Number(libc().sendto(this.fd, data, BigInt(data.length), 0, addr, 110));
      if (n >= 0) return;
      const e = lastErrno();
      if (e === EINTR) continue;
      throw new UnixDatagramError(`sendto(${path})`, e);
    }
  }

  /** One waiting datagram, or null. */
  receive(max = 1 << 16): Uint8Array | null {
    const buf = new Uint8Array(max);
    for (;;) {
      const n = Number(libc().recv(this.fd, buf, BigInt(buf.length), 0));
      if (n >= 0) return buf.slice(0, n);
      const e = lastErrno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return null;
      throw new UnixDatagramError("recv", e);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.fd);
  }
}
