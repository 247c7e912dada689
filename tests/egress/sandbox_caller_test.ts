// Caller identity on the host's own /proc: parsing, real processes, races and shared sockets.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  ancestorsOf,
  callerLine,
  ExeHasher,
  identifyCaller,
  normalizeAddress,
  parseProcNetTcp,
  UNKNOWN_CALLER,
} from "../../core/sandbox/caller.ts";
import { systemProgramSkip } from "./sandbox_skip.ts";
import { SockDiag } from "../../ffi/sock_diag.ts";

const pySkip = systemProgramSkip(["python3"]);
if (pySkip) console.log(`skipping caller tests with real processes: ${pySkip}`);
const PYTHON = "/usr/bin/python3";

Deno.test("caller: /proc/net/tcp and tcp6 lines decode to addresses, ports, owners and inodes", () => {
  const v4 =
    `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A3F2 0100007F:0C38 01 00000000:00000000 00:00000000 00000000 65534        0 777 1 0000000000000000 20 4 30 10 -1`;
  assert.deepEqual(parseProcNetTcp(v4), [
    {
      local: { address: "127.0.0.1", port: 3128 },
      remote: { address: "0.0.0.0", port: 0 },
      uid: 65534,
      inode: 4242,
    },
    {
      local: { address: "127.0.0.1", port: 0xa3f2 },
      remote: { address: "127.0.0.1", port: 3128 },
      uid: 65534,
      inode: 777,
    },
  ]);
  const v6 =
    `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:0C38 01 00000000:00000000 00:00000000 00000000 65534        0 99 1 0000000000000000 20 4 0 10 -1
   1: 0000000000000000FFFF00000100007F:D432 0000000000000000FFFF00000100007F:0C38 01 00000000:00000000 00:00000000 00000000 65534        0 100 1 0000000000000000 20 4 0 10 -1`;
  assert.deepEqual(parseProcNetTcp(v6), [
    {
      local: { address: "0:0:0:0:0:0:0:1", port: 0xd431 },
      remote: { address: "0:0:0:0:0:0:0:1", port: 3128 },
      uid: 65534,
      inode: 99,
    },
    {
      local: { address: "127.0.0.1", port: 0xd432 },
      remote: { address: "127.0.0.1", port: 3128 },
      uid: 65534,
      inode: 100,
    },
  ]);
  assert.equal(normalizeAddress("::1"), "0:0:0:0:0:0:0:1");
  assert.equal(normalizeAddress("[::ffff:127.0.0.1]"), "127.0.0.1");
  assert.equal(normalizeAddress("127.0.0.2"), "127.0.0.2");
});

Deno.test("caller: the caller line is JSON, unknown callers carry no pid, long paths become unknown", () => {
  assert.equal(
    callerLine({ pid: 12, exe: "/usr/bin/curl", sha256: "ab" }),
    'CLAWCAGE-CALLER {"pid":12,"exe":"/usr/bin/curl","sha256":"ab"}\r\n',
  );
  assert.equal(callerLine(UNKNOWN_CALLER), 'CLAWCAGE-CALLER {"exe":"","sha256":""}\r\n');
  assert.equal(
    callerLine({ pid: 12, exe: "/usr/bin/curl", sha256: "", ancestors: ["/usr/bin/dash"] }),
    'CLAWCAGE-CALLER {"pid":12,"exe":"/usr/bin/curl","sha256":"","ancestors":["/usr/bin/dash"]}\r\n',
  );
  // Too long with every ancestor: the farthest are dropped until the line fits.
  const many = Array.from({ length: 64 }, (_, i) => `/opt/${"x".repeat(100)}/${i}`);
  const line = callerLine({ pid: 12, exe: "/usr/bin/curl", sha256: "", ancestors: many });
  assert.ok(new TextEncoder().encode(line).length <= 4096);
  const kept = JSON.parse(line.slice("CLAWCAGE-CALLER ".length)).ancestors as string[];
  assert.ok(kept.length > 10 && kept.length < 64);
  assert.deepEqual(kept, many.slice(0, kept.length));
  assert.equal(
    callerLine({ pid: 12, exe: "/" + "a".repeat(5000), sha256: "" }),
    'CLAWCAGE-CALLER {"exe":"","sha256":""}\r\n',
  );
});

Deno.test("caller: the executable hash is cached and recomputed when the file changes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = `${dir}/prog`;
    await Deno.writeTextFile(f, "one");
    const hasher = new ExeHasher();
    const h1 = await hasher.hash(f);
    assert.equal(h1, createHash("sha256").update("one").digest("hex"));
    assert.equal(await hasher.hash(f), h1);
    await Deno.writeTextFile(f, "two!");
    assert.equal(await hasher.hash(f), createHash("sha256").update("two!").digest("hex"));
    assert.equal(await hasher.hash(`${dir}/missing`), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Starts python running `code` (which connects to PORT) and waits for its "ready" line. */
async function python(code: string, port: number) {
  const child = new Deno.Command(PYTHON, {
    args: ["-c", code, String(port)],
    stdout: "piped",
    stderr: "inherit",
    stdin: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(new TextDecoder().decode(value), /ready/);
  reader.releaseLock();
  return {
    pid: child.pid,
    async finish() {
      await child.stdin.close();
      await child.output();
    },
  };
}

async function withListener(fn: (l: Deno.TcpListener, port: number) => Promise<void>) {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await fn(l, (l.addr as Deno.NetAddr).port);
  } finally {
    l.close();
  }
}

/** Identifies through /proc/net/tcp, and through sock_diag; both must agree. */
async function identify(conn: Deno.TcpConn, hasher = new ExeHasher()) {
  const c = conn.remoteAddr as Deno.NetAddr;
  const s = conn.localAddr as Deno.NetAddr;
  const client = { address: c.hostname, port: c.port };
  const server = { address: s.hostname, port: s.port };
  const viaProc = await identifyCaller(client, server, hasher);
  const diag = SockDiag.open();
  try {
    const viaDiag = await identifyCaller(client, server, hasher, {
      socketOf: (a, b) => diag.tcpLookup(a, b),
    });
    assert.deepEqual(viaDiag, viaProc);
  } finally {
    diag.close();
  }
  return viaProc;
}

const CONNECT = `import socket, sys, os, subprocess
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
`;

Deno.test({
  name: `caller: a connecting process is found by pid, executable and hash${
    pySkip ? ` (skipped: ${pySkip})` : ""
  }`,
  ignore: pySkip !== null,
  fn: () =>
    withListener(async (l, port) => {
      const p = await python(CONNECT + `print("ready", flush=True); sys.stdin.read()`, port);
      const conn = await l.accept();
      const caller = await identify(conn);
      const exe = Deno.realPathSync(PYTHON);
      assert.equal(caller.pid, p.pid);
      assert.equal(caller.exe, exe);
      assert.equal(
        caller.sha256,
        createHash("sha256").update(Deno.readFileSync(exe)).digest("hex"),
      );
      // Its parent is this test process, which runs the same executable as clawcage (deno):
      // the chain stops there, so no ancestor is named.
      assert.equal(caller.ancestors, undefined);
      conn.close();
      await p.finish();
    }),
});

Deno.test({
  name: `caller: a process that is gone is unknown${pySkip ? ` (skipped: ${pySkip})` : ""}`,
  ignore: pySkip !== null,
  fn: () =>
    withListener(async (l, port) => {
      const p = await python(CONNECT + `print("ready", flush=True)`, port);
      const conn = await l.accept();
      await p.finish();
      assert.deepEqual(await identify(conn), UNKNOWN_CALLER);
      conn.close();
    }),
});

Deno.test({
  name:
    `caller: a socket shared with another program is unknown; with a fork of the same program, the parent${
      pySkip ? ` (skipped: ${pySkip})` : ""
    }`,
  ignore: pySkip !== null,
  fn: () =>
    withListener(async (l, port) => {
      // Shared with /bin/sleep (inherited descriptor): two executables, no single owner.
      const shared = await python(
        CONNECT +
          `c = subprocess.Popen(["/bin/sleep", "30"], pass_fds=[s.fileno()])
print("ready", flush=True); sys.stdin.read(); c.kill()`,
        port,
      );
      const conn1 = await l.accept();
      assert.deepEqual(await identify(conn1), UNKNOWN_CALLER);
      conn1.close();
      await shared.finish();
      // Shared with a fork of itself: same executable, attributed to the lowest pid.
      const forked = await python(
        CONNECT +
          `pid = os.fork()
if pid == 0:
    sys.stdin.read(); os._exit(0)
print("ready", flush=True); sys.stdin.read(); os.kill(pid, 9)`,
        port,
      );
      const conn2 = await l.accept();
      const caller = await identify(conn2);
      assert.equal(caller.pid, forked.pid);
      assert.equal(caller.exe, Deno.realPathSync(PYTHON));
      conn2.close();
      await forked.finish();
    }),
});

Deno.test({
  name: `caller: ancestors are the parents' executables, nearest first${
    pySkip ? ` (skipped: ${pySkip})` : ""
  }`,
  ignore: pySkip !== null,
  async fn() {
    // sh -> python3 -> sleep: the ancestors of sleep are python3, then sh (then this test's
    // deno, where the chain stops).
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        `${PYTHON} -c 'import subprocess, sys; c = subprocess.Popen(["/bin/sleep", "30"]); print(c.pid, flush=True); sys.stdin.read(); c.kill()'`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    const sleepPid = Number(new TextDecoder().decode(value).trim());
    try {
      assert.deepEqual(ancestorsOf(sleepPid), [
        Deno.realPathSync(PYTHON),
        Deno.realPathSync("/bin/sh"),
      ]);
      assert.deepEqual(ancestorsOf(sleepPid, "/proc", "/no/such/exe").slice(0, 3), [
        Deno.realPathSync(PYTHON),
        Deno.realPathSync("/bin/sh"),
        Deno.realPathSync(Deno.execPath()),
      ]);
    } finally {
      await child.stdin.close();
      await child.output();
    }
  },
});
