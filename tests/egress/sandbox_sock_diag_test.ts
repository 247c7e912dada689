// ffi/sock_diag.ts: exact TCP socket lookup agrees with /proc/net/tcp(6), IPv4, IPv6 and
// dual-stack (an AF_INET6 socket connected to an IPv4 listener).

import assert from "node:assert/strict";
import { SockDiag } from "../../ffi/sock_diag.ts";
import { findSocket } from "../../core/sandbox/caller.ts";
import { systemProgramSkip } from "./sandbox_skip.ts";

async function check(hostname: string, connect: (port: number) => Promise<() => Promise<void>>) {
  const l = Deno.listen({ hostname, port: 0 });
  const diag = SockDiag.open();
  try {
    const done = await connect((l.addr as Deno.NetAddr).port);
    const conn = await l.accept();
    const c = conn.remoteAddr as Deno.NetAddr, s = conn.localAddr as Deno.NetAddr;
    const client = { address: c.hostname, port: c.port };
    const server = { address: s.hostname, port: s.port };
    const found = diag.tcpLookup(client, server);
    assert.ok(found, `no socket for ${c.hostname}:${c.port}`);
    assert.deepEqual(found, findSocket(client, server));
    assert.equal(found.uid, Deno.uid());
    // The server's end is a different socket; a port nobody uses is no socket.
    assert.notEqual(diag.tcpLookup(server, client)?.inode, found.inode);
    assert.equal(diag.tcpLookup({ ...client, port: 1 }, server), null);
    conn.close();
    await done();
  } finally {
    diag.close();
    l.close();
  }
}

const denoConnect = (hostname: string) => async (port: number) => {
  const c = await Deno.connect({ hostname, port });
  return () => Promise.resolve(c.close());
};

Deno.test("sock_diag: IPv4 loopback", () => check("127.0.0.1", denoConnect("127.0.0.1")));
Deno.test("sock_diag: IPv6 loopback", () => check("::1", denoConnect("::1")));

const pySkip = systemProgramSkip(["python3"]);
Deno.test({
  name: `sock_diag: a dual-stack socket on an IPv4 listener${
    pySkip ? ` (skipped: ${pySkip})` : ""
  }`,
  ignore: pySkip !== null,
  fn: () =>
    check("127.0.0.1", async (port) => {
      const child = new Deno.Command("/usr/bin/python3", {
        args: [
          "-c",
          `import socket, sys
s = socket.socket(socket.AF_INET6); s.connect(("::ffff:127.0.0.1", ${port}))
print("ready", flush=True); sys.stdin.read()`,
        ],
        stdin: "piped",
        stdout: "piped",
      }).spawn();
      const r = child.stdout.getReader();
      await r.read();
      r.releaseLock();
      return async () => {
        await child.stdin.close();
        await child.output();
      };
    }),
});
