// A byte tunnel between the client and the upstream (CONNECT without inspection, WebSocket
// after 101): both directions piped by their readers (bytes they already buffered first) with
// backpressure, bytes counted, closed when either side closes or nothing moves either way for
// `idleMs`.

import { IdleTimer } from "./idle.ts";
import type { StreamReader } from "./reader.ts";

export interface TunnelResult {
  /** Bytes client -> upstream. */
  up: number;
  /** Bytes upstream -> client. */
  down: number;
}

export function tunnel(
  client: StreamReader,
  upstream: StreamReader,
  idleMs: number,
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
    const pipe = (from: StreamReader, to: StreamReader, count: { bytes: number }) => {
      // Half-close: pass the FIN on; a reset, an error or the idle timer ends both.
      from.pipeTo(to.sock, Infinity, idle, count).then(() => to.sock.end(), finish);
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
    pipe(client, upstream, up);
    pipe(upstream, client, down);
  });
}
