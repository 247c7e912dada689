// A byte tunnel between the client and the upstream (CONNECT without inspection, WebSocket
// after 101): both directions piped with backpressure, bytes counted, closed when either side
// closes or nothing moves for `idleMs`.

import type { Duplex } from "node:stream";

export interface TunnelResult {
  /** Bytes client -> upstream. */
  up: number;
  /** Bytes upstream -> client. */
  down: number;
}

export function tunnel(
  client: Duplex,
  upstream: Duplex,
  idleMs: number,
  first: { up?: Uint8Array; down?: Uint8Array } = {},
): Promise<TunnelResult> {
  return new Promise((resolve) => {
    const r: TunnelResult = { up: 0, down: 0 };
    let done = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let grace: ReturnType<typeof setTimeout> | undefined;
    let closed = 0;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(finish, idleMs);
    };
    function finish() {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(grace);
      client.destroy();
      upstream.destroy();
      resolve(r);
    }
    const pipe = (from: Duplex, to: Duplex, count: (n: number) => void) => {
      from.on("data", (c: Uint8Array) => {
        count(c.length);
        arm();
        if (!to.write(c)) {
          from.pause();
          to.once("drain", () => from.resume());
        }
      });
      // Half-close: pass the FIN on; finish when both sides closed, or soon after one did.
      from.on("end", () => to.end());
      from.on("close", () => {
        closed++;
        if (closed === 2 || to.writableFinished || to.destroyed) finish();
        else {
          to.once("finish", finish);
          grace ??= setTimeout(finish, 1000);
        }
      });
      from.on("error", finish);
    };
    if (first.up?.length) {
      r.up += first.up.length;
      upstream.write(first.up);
    }
    if (first.down?.length) {
      r.down += first.down.length;
      client.write(first.down);
    }
    pipe(client, upstream, (n) => r.up += n);
    pipe(upstream, client, (n) => r.down += n);
    client.resume();
    upstream.resume();
    arm();
  });
}
