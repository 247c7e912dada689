// A byte tunnel between the client and the upstream (CONNECT without inspection, WebSocket
// after 101): both directions piped by their readers (bytes they already buffered first) with
// backpressure, bytes counted, closed when either side closes or nothing moves either way for
// `idleMs`. Optionally the client's bytes are shown to a watcher before they go up (WebSocket
// message rules), which may stop the tunnel.

import { IdleTimer } from "./idle.ts";
import type { StreamReader } from "./reader.ts";

export interface TunnelResult {
  /** Bytes client -> upstream. */
  up: number;
  /** Bytes upstream -> client. */
  down: number;
}

/**
 * Sees each client -> upstream chunk before it is forwarded. A non-null answer stops the tunnel:
 * the chunk is not forwarded, the upstream is closed, and the answer is the last thing the client
 * gets before its connection is closed.
 */
export type UpWatch = (chunk: Uint8Array) => Uint8Array | null;

export function tunnel(
  client: StreamReader,
  upstream: StreamReader,
  idleMs: number,
  watchUp?: UpWatch,
): Promise<TunnelResult> {
  return new Promise((resolve) => {
    const up = { bytes: 0 }, down = { bytes: 0 };
    const idle = new IdleTimer(idleMs);
    let done = false;
    let grace: ReturnType<typeof setTimeout> | undefined;
    let closed = 0;
    function finish() {
      if (done) return;
      done = true;
      idle.stop();
      clearTimeout(grace);
      client.sock.destroy();
      upstream.sock.destroy();
      resolve({ up: up.bytes, down: down.bytes });
    }
    const pipe = (from: StreamReader, to: StreamReader, move: () => Promise<unknown>) => {
      // Half-close: pass the FIN on; a reset, an error or the idle timer ends both.
      move().then(() => to.sock.end(), finish);
      // Finish when both sides closed, or soon after one did.
      from.sock.on("close", () => {
        closed++;
        if (closed === 2 || to.sock.writableFinished || to.sock.destroyed) finish();
        else {
          to.sock.once("finish", finish);
          grace ??= setTimeout(finish, 1000);
        }
      });
    };
    /** Client -> upstream, a chunk at a time through the watcher (the slow path). */
    const watched = async (watch: UpWatch) => {
      for (;;) {
        // No timeout of its own: the shared idle timer (touched both ways) ends quiet tunnels.
        const chunk = await client.read(256 * 1024, Infinity);
        if (chunk === null || done) return;
        idle.touch();
        const answer = watch(chunk);
        if (answer) {
          upstream.sock.destroy();
          client.sock.end(answer, finish);
          grace ??= setTimeout(finish, 1000);
          return await new Promise(() => {}); // finish() ends it
        }
        up.bytes += chunk.length;
        if (!upstream.sock.write(chunk)) {
          await new Promise<void>((r) => {
            upstream.sock.once("drain", r);
            upstream.sock.once("close", r);
          });
        }
      }
    };
    pipe(
      client,
      upstream,
      watchUp ? () => watched(watchUp) : () => client.pipeTo(upstream.sock, Infinity, idle, up),
    );
    pipe(upstream, client, () => upstream.pipeTo(client.sock, Infinity, idle, down));
  });
}
