// The status socket of `clawcage service`: a unix socket (mode 0600 in a 0700 directory, so
// only the service's user, root on an appliance, can connect). Each connection receives one
// JSON document and is closed; the socket accepts no input.

export class StatusSocketError extends Error {}

export interface StatusServer {
  path: string;
  close(): Promise<void>;
}

/** Creates `dir` (0700, ours) and serves `status()` on `dir/name`. */
export async function serveStatus(
  dir: string,
  name: string,
  status: () => unknown,
): Promise<StatusServer> {
  const path = `${dir}/${name}`;
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const info = await Deno.stat(dir);
    if (!info.isDirectory) throw new StatusSocketError(`${dir} is not a directory`);
    if (info.uid !== Deno.uid()) {
      throw new StatusSocketError(`${dir} belongs to uid ${info.uid}, not to us (${Deno.uid()})`);
    }
    await Deno.chmod(dir, 0o700);
  } catch (e) {
    if (e instanceof StatusSocketError) throw e;
    throw new StatusSocketError(`cannot create runtime directory ${dir}: ${(e as Error).message}`);
  }
  await removeStale(path);
  let listener: Deno.UnixListener;
  try {
    listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
  } catch (e) {
    throw new StatusSocketError(`cannot listen on ${path}: ${(e as Error).message}`);
  }
  const encoder = new TextEncoder();
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          const bytes = encoder.encode(JSON.stringify(status()) + "\n");
          let off = 0;
          while (off < bytes.length) off += await conn.write(bytes.subarray(off));
        } catch { /* the client went away */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  return {
    path,
    async close() {
      listener.close();
      await serving;
      try {
        await Deno.remove(path);
      } catch { /* gone */ }
    },
  };
}

/** A socket left by a service that died is removed; one that answers means we are not alone. */
async function removeStale(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch {
    return;
  }
  if (!info.isSocket) throw new StatusSocketError(`${path} exists and is not a socket`);
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw new StatusSocketError(`another clawcage service is running (it answers on ${path})`);
  } catch (e) {
    if (e instanceof StatusSocketError) throw e;
  }
  await Deno.remove(path);
}

/** Reads one status document from the socket. */
export async function readStatus(path: string): Promise<unknown> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused) {
      throw new StatusSocketError(`clawcage service is not running (no answer on ${path})`);
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new StatusSocketError(`permission denied on ${path}: the status socket is root-only`);
    }
    throw new StatusSocketError(`cannot connect to ${path}: ${(e as Error).message}`);
  }
  const text = await new Response(conn.readable).text();
  try {
    return JSON.parse(text);
  } catch {
    throw new StatusSocketError(`${path} answered something that is not JSON`);
  }
}
