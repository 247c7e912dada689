// The model store: GGUF files kept under the data directory, each with a manifest that records
// its SHA-256, size and source. `clawcage models add` fills it (copy from a path, or download
// with resume), llama-cpp backends name its models in `model_path`.
//
// Layout: DIR/NAME.gguf, DIR/NAME.json (manifest), DIR/NAME.gguf.part while being added.
// DIR: $CLAWCAGE_MODELS_DIR, else /var/lib/clawcage/models for root, else
// $XDG_DATA_HOME/clawcage/models (~/.local/share/clawcage/models).

import { createHash } from "node:crypto";

export interface ModelManifest {
  name: string;
  /** File name inside the store. */
  file: string;
  sha256: string;
  size: number;
  /** The path or URL it was added from. */
  source: string;
  /** Whether the SHA-256 was checked against one the user gave (--sha256). */
  verified: boolean;
  added: string;
}

export class StoreError extends Error {}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function modelsDir(env: (name: string) => string | undefined = (n) => Deno.env.get(n)) {
  const override = env("CLAWCAGE_MODELS_DIR");
  if (override) return override;
  if (Deno.uid() === 0) return "/var/lib/clawcage/models";
  const data = env("XDG_DATA_HOME") || `${env("HOME") ?? "/root"}/.local/share`;
  return `${data}/clawcage/models`;
}

export function checkName(name: string): string {
  if (!NAME.test(name) || name.endsWith(".part") || name.endsWith(".json")) {
    throw new StoreError(
      `invalid model name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-' (at most 128)`,
    );
  }
  return name;
}

/** The store name a path or URL gets by default: its file name without .gguf. */
export function defaultName(source: string): string {
  let base = source;
  if (/^https?:\/\//.test(source)) base = new URL(source).pathname;
  base = decodeURIComponent(base.replace(/\/+$/, "").replace(/^.*\//, ""));
  return base.replace(/\.gguf$/i, "");
}

export class ModelStore {
  constructor(readonly dir: string = modelsDir()) {}

  path(name: string): string {
    return `${this.dir}/${checkName(name)}.gguf`;
  }

  manifestPath(name: string): string {
    return `${this.dir}/${checkName(name)}.json`;
  }

  partPath(name: string): string {
    return `${this.path(name)}.part`;
  }

  async list(): Promise<ModelManifest[]> {
    const out: ModelManifest[] = [];
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(this.dir));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw new StoreError(`cannot read the model store ${this.dir}: ${(e as Error).message}`);
    }
    for (const e of entries) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      const m = await this.get(e.name.slice(0, -5)).catch(() => null);
      if (m) out.push(m);
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<ModelManifest | null> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.manifestPath(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    try {
      return JSON.parse(text) as ModelManifest;
    } catch {
      throw new StoreError(`the manifest ${this.manifestPath(name)} is not valid JSON`);
    }
  }

  /** The GGUF file of a stored model (synchronous: used when a policy is loaded). */
  resolve(name: string): string {
    checkName(name);
    try {
      Deno.statSync(this.manifestPath(name));
      Deno.statSync(this.path(name));
    } catch {
      throw new StoreError(
        `model ${
          JSON.stringify(name)
        } is not in the model store ${this.dir} (see clawcage models list)`,
      );
    }
    return this.path(name);
  }

  async remove(name: string): Promise<ModelManifest> {
    const m = await this.get(name);
    if (!m) {
      throw new StoreError(`model ${JSON.stringify(name)} is not in the model store ${this.dir}`);
    }
    for (const p of [this.path(name), this.partPath(name), this.manifestPath(name)]) {
      await Deno.remove(p).catch((e) => {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      });
    }
    return m;
  }

  /** Moves a complete, checked .part file into place and writes its manifest. */
  async commit(
    name: string,
    info: { sha256: string; size: number; source: string; verified: boolean },
  ): Promise<ModelManifest> {
    await checkGgufHeader(this.partPath(name));
    const manifest: ModelManifest = {
      name,
      file: `${name}.gguf`,
      ...info,
      added: new Date().toISOString(),
    };
    await Deno.rename(this.partPath(name), this.path(name));
    const tmp = `${this.manifestPath(name)}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(manifest, null, 2) + "\n", { mode: 0o644 });
    await Deno.rename(tmp, this.manifestPath(name));
    return manifest;
  }

  async ensureDir(): Promise<void> {
    try {
      await Deno.mkdir(this.dir, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw new StoreError(`cannot create the model store ${this.dir}: ${(e as Error).message}`);
    }
  }
}

/** Turns a policy's model_path into a file: absolute paths as they are, else a store name. */
export function modelPathResolver(store = new ModelStore()): (modelPath: string) => string {
  return (modelPath) => modelPath.startsWith("/") ? modelPath : store.resolve(modelPath);
}

async function checkGgufHeader(path: string): Promise<void> {
  const f = await Deno.open(path);
  try {
    const head = new Uint8Array(4);
    const n = await f.read(head);
    if (n !== 4 || new TextDecoder().decode(head) !== "GGUF") {
      throw new StoreError("the file is not a GGUF model (no GGUF header)");
    }
  } finally {
    f.close();
  }
}

export type Progress = (done: number, total: number | null) => void;

/** Feeds a whole file to `hash`; returns its size. */
async function hashFile(path: string, hash: ReturnType<typeof createHash>): Promise<number> {
  let n = 0;
  const f = await Deno.open(path);
  for await (const chunk of f.readable) { // closes the file at the end
    hash.update(chunk);
    n += chunk.byteLength;
  }
  return n;
}

/** Copies a local file into `dest`, hashing it. */
export async function copyInto(
  source: string,
  dest: string,
  progress: Progress,
): Promise<{ sha256: string; size: number }> {
  let total: number;
  try {
    const st = await Deno.stat(source);
    if (!st.isFile) throw new StoreError(`${source} is not a file`);
    total = st.size;
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw new StoreError(`cannot read ${source}: ${(e as Error).message}`);
  }
  const hash = createHash("sha256");
  const src = await Deno.open(source);
  const out = await Deno.open(dest, { write: true, create: true, truncate: true, mode: 0o644 });
  let done = 0;
  try {
    for await (const chunk of src.readable) {
      hash.update(chunk);
      await writeAll(out, chunk);
      done += chunk.byteLength;
      progress(done, total);
    }
  } finally {
    out.close();
  }
  return { sha256: hash.digest("hex"), size: done };
}

/**
 * Downloads `url` into `dest`, resuming a partial `dest` with a Range request when the server
 * allows it (206); a server that answers 200 restarts the download from the beginning.
 */
export async function download(
  url: string,
  dest: string,
  progress: Progress,
  log: (line: string) => void,
): Promise<{ sha256: string; size: number; resumedFrom: number }> {
  let have = 0;
  try {
    have = (await Deno.stat(dest)).size;
  } catch { /* nothing yet */ }
  const headers: Record<string, string> = {};
  if (have > 0) headers.range = `bytes=${have}-`;
  let res: Response;
  try {
    res = await fetch(url, { headers });
  } catch (e) {
    throw new StoreError(`cannot download ${url}: ${(e as Error).message}`);
  }
  if (res.status === 416 && have > 0) {
    // Already complete (the server has nothing past what we have).
    await res.body?.cancel();
    const hash = createHash("sha256");
    const size = await hashFile(dest, hash);
    return { sha256: hash.digest("hex"), size, resumedFrom: have };
  }
  if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    throw new StoreError(`cannot download ${url}: HTTP ${res.status}`);
  }
  const hash = createHash("sha256");
  let resumedFrom = 0;
  let file: Deno.FsFile;
  if (res.status === 206 && have > 0) {
    const range = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
    if (!range || Number(range[1]) !== have) {
      await res.body?.cancel();
      throw new StoreError(
        `cannot resume ${url}: the server sent ${
          res.headers.get("content-range") ?? "no Content-Range"
        } for bytes=${have}-`,
      );
    }
    await hashFile(dest, hash);
    resumedFrom = have;
    file = await Deno.open(dest, { write: true, append: true });
    log(`resuming at ${formatBytes(have)}`);
  } else {
    if (have > 0) log("the server does not resume downloads; starting again");
    file = await Deno.open(dest, { write: true, create: true, truncate: true, mode: 0o644 });
  }
  const length = Number(res.headers.get("content-length") ?? NaN);
  const total = Number.isFinite(length) ? resumedFrom + length : null;
  let done = resumedFrom;
  try {
    for await (const chunk of res.body!) {
      hash.update(chunk);
      await writeAll(file, chunk);
      done += chunk.byteLength;
      progress(done, total);
    }
  } catch (e) {
    throw new StoreError(
      `the download of ${url} broke off at ${formatBytes(done)} (${
        (e as Error).message
      }); run the same command again to resume`,
    );
  } finally {
    file.close();
  }
  if (total !== null && done !== total) {
    throw new StoreError(
      `the download of ${url} ended at ${formatBytes(done)} of ${
        formatBytes(total)
      }; run the same command again to resume`,
    );
  }
  return { sha256: hash.digest("hex"), size: done, resumedFrom };
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) off += await file.write(data.subarray(off));
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
