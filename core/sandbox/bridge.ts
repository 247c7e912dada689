// The bridge: runs in the stage, inside the sandbox's network namespace. It listens on
// 127.0.0.1:3128 (and [::1]:3128 when loopback has IPv6), finds which sandboxed process opened
// each connection, and relays the connection to the egress proxy's unix socket outside the
// sandbox, prefixed by one `CLAWCAGE-CALLER {...}\r\n` line. Bytes then pass unchanged both ways.
//
// The proxy socket is reached through a directory descriptor the stage opened before it hid
// /run (`/proc/self/fd/N/proxy.sock`): the agent has no path to it and cannot use the stage's
// descriptors (the stage is not dumpable and the descriptor is close-on-exec).

import {
  type Caller,
  callerLine,
  type Endpoint,
  ExeHasher,
  identifyCaller,
  UNKNOWN_CALLER,
} from "./caller.ts";
import type { SockDiag } from "../../ffi/sock_diag.ts";

/** Listens on the loopback addresses of the current network namespace. */
export function listenBridge(port: number): Deno.TcpListener[] {
  const listeners = [Deno.listen({ hostname: "127.0.0.1", port, transport: "tcp" })];
  try {
    listeners.push(Deno.listen({ hostname: "::1", port, transport: "tcp" }));
  } catch (e) {
    // Loopback without IPv6 (disabled by sysctl): the IPv4 listener is enough.
    if (!(e instanceof Deno.errors.AddrNotAvailable)) {
      for (const l of listeners) l.close();
      throw e;
    }
  }
  return listeners;
}

export interface BridgeOptions {
  /** Path of the proxy's unix socket, as this process can reach it. */
  proxyPath: string;
  /** Finds the caller of an accepted connection (default: the /proc lookup below). */
  identify?: (client: Endpoint, server: Endpoint) => Promise<Caller>;
  /**
   * A NETLINK_SOCK_DIAG socket opened in the sandbox's network namespace: finds the client
   * socket in microseconds instead of reading /proc/net/tcp (milliseconds). Optional.
   */
  sockDiag?: SockDiag | null;
}

/** Accepts on every listener until they are closed. Never throws for one bad connection. */
export async function serveBridge(
  listeners: Deno.TcpListener[],
  opts: BridgeOptions,
): Promise<void> {
  const hasher = new ExeHasher();
  const diag = opts.sockDiag;
  const socketOf = diag
    ? (client: Endpoint, server: Endpoint) => diag.tcpLookup(client, server)
    : undefined;
  const identify = opts.identify ??
    ((client: Endpoint, server: Endpoint) => identifyCaller(client, server, hasher, { socketOf }));
  await Promise.all(listeners.map(async (listener) => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        // Out of descriptors or a connection reset before accept: wait a moment, go on.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      // Identify now, while the caller is certainly still connected: the lookup runs before
      // identify() first yields; only hashing the executable is awaited.
      const client = conn.remoteAddr as Deno.NetAddr;
      const server = conn.localAddr as Deno.NetAddr;
      let caller: Promise<Caller>;
      try {
        caller = identify(
          { address: client.hostname, port: client.port },
          { address: server.hostname, port: server.port },
        ).catch(() => UNKNOWN_CALLER);
      } catch {
        caller = Promise.resolve(UNKNOWN_CALLER);
      }
      relay(conn, opts.proxyPath, caller);
    }
  }));
}

const encoder = new TextEncoder();

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

async function relay(
  conn: Deno.TcpConn,
  proxyPath: string,
  identified: Promise<Caller>,
): Promise<void> {
  let upstream: Deno.UnixConn;
  const caller = await identified;
  try {
    upstream = await Deno.connect({ transport: "unix", path: proxyPath });
  } catch {
    // The proxy is gone: fail closed, the client sees the connection close.
    conn.close();
    return;
  }
  let closed = false;
  const closeBoth = () => {
    if (closed) return;
    closed = true;
    for (const c of [conn, upstream]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
  try {
    conn.setNoDelay(true);
    await writeAll(upstream, encoder.encode(callerLine(caller)));
    await Promise.all([pump(conn, upstream), pump(upstream, conn)]);
  } catch {
    // A reset on either side ends the relay.
  } finally {
    closeBoth();
  }

  async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        await writeAll(to, buf.subarray(0, n));
      }
      // Half-close: the other direction may still carry the answer.
      await to.closeWrite();
    } catch (e) {
      closeBoth();
      throw e;
    }
  }
}
