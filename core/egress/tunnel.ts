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

/**
 * Sees each client -> upstream chunk before it is forwarded. A non-null answer stops the tunnel:
 * the chunk is not forwarded, the upstream is closed, and the answer is the last thing the client
 * gets before its connection is closed.
 */
export type UpWatch = (chunk: Uint8Array) => Uint8Array | null;

export function tunnel(
  client: Duplex,
  upstream: Duplex,
  idleMs: number,
  first: { up?: Uint8Array; down?: Uint8Array } = {},
  watchUp?: UpWatch,
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
    let stopped = false;
    /** The watcher refused `c`: nothing more goes up; the client gets `answer`, then closes. */
    const stop = (answer: Uint8Array) => {
      stopped = true;
      client.pause();
      upstream.destroy();
      client.end(answer, finish);
      grace ??= setTimeout(finish, 1000);
    };
    const pipe = (from: Duplex, to: Duplex, count: (n: number) => void) => {
      const watch = from === client ? watchUp : undefined;
      from.on("data", (c: Uint8Array) => {
        if (stopped) return;
        const answer = watch?.(c);
        if (answer) return stop(answer);
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
    if (first.down?.length) {
      r.down += first.down.length;
      client.write(first.down);
    }
    const answer = first.up?.length ? watchUp?.(first.up) : null;
    if (answer) stop(answer);
    else if (first.up?.length) {
      r.up += first.up.length;
      upstream.write(first.up);
    }
    pipe(client, upstream, (n) => r.up += n);
    pipe(upstream, client, (n) => r.down += n);
    client.resume();
    upstream.resume();
    arm();
  });
}
