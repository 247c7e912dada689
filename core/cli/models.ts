// `clawcage models list | add PATH_OR_URL | remove NAME`: the local model store (GGUF files for
// llama-cpp backends, which name them in model_path).

import { parseArgs } from "node:util";
import {
  copyInto,
  defaultName,
  download,
  formatBytes,
  type ModelManifest,
  modelsDir,
  ModelStore,
  type Progress,
  StoreError,
} from "../models/store.ts";
import { printJson, UsageError } from "./common.ts";

export const MODELS_HELP = `Usage:
  clawcage models list [--json]
  clawcage models add PATH_OR_URL [--name NAME] [--sha256 HEX] [--force] [--json]
  clawcage models remove NAME [--json]

The model store holds GGUF files for llama-cpp backends of the privacy router; a policy names
a stored model in model_path (model_path: NAME) or gives an absolute path.

  add       copies a file, or downloads an http(s) URL with a progress bar; an interrupted
            download resumes where it stopped when the same command is run again (HTTP Range).
            --sha256 HEX: refuse (and discard) the file unless its SHA-256 is HEX.
            --name NAME: the name in the store (default: the file name without .gguf).
            --force: replace a model of the same name.
  list      name, size, SHA-256 (verified or not), source
  remove    deletes the model and its manifest

Options:
      --dir DIR   the store (default: $CLAWCAGE_MODELS_DIR, /var/lib/clawcage/models for root,
                  else $XDG_DATA_HOME/clawcage/models or ~/.local/share/clawcage/models)
      --json      machine-readable output on stdout`;

export async function modelsCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        dir: { type: "string" },
        name: { type: "string" },
        sha256: { type: "string" },
        force: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new UsageError(`models: ${(e as Error).message} (see clawcage models --help)`);
  }
  const { values, positionals } = parsed;
  const [sub, ...rest] = positionals;
  if (values.help || sub === undefined || sub === "help") {
    console.log(MODELS_HELP);
    return sub === undefined && !values.help ? 2 : 0;
  }
  const store = new ModelStore(values.dir ?? modelsDir());
  try {
    switch (sub) {
      case "list":
        if (rest.length) throw new UsageError("models list takes no arguments");
        return await list(store, values.json === true);
      case "add":
        if (rest.length !== 1) throw new UsageError("models add needs one PATH_OR_URL");
        return await add(store, rest[0], values);
      case "remove":
        if (rest.length !== 1) throw new UsageError("models remove needs one NAME");
        return await remove(store, rest[0], values.json === true);
      default:
        throw new UsageError(
          `models: unknown subcommand ${JSON.stringify(sub)} (expected list, add or remove)`,
        );
    }
  } catch (e) {
    if (e instanceof StoreError) throw new UsageError(`models ${sub}: ${e.message}`, 1);
    throw e;
  }
}

async function list(store: ModelStore, json: boolean): Promise<number> {
  const models = await store.list();
  if (json) {
    printJson({
      dir: store.dir,
      models: models.map((m) => ({ ...m, path: store.path(m.name) })),
    });
    return 0;
  }
  if (models.length === 0) {
    console.log(`no models in ${store.dir} (add one with clawcage models add PATH_OR_URL)`);
    return 0;
  }
  console.log(`models in ${store.dir}:`);
  for (const m of models) {
    console.log(
      `  ${m.name}  ${formatBytes(m.size)}  sha256 ${m.sha256}${
        m.verified ? " (verified)" : ""
      }  from ${m.source}`,
    );
  }
  return 0;
}

async function add(
  store: ModelStore,
  source: string,
  opts: { name?: string; sha256?: string; force?: boolean; json?: boolean },
): Promise<number> {
  const isUrl = /^https?:\/\//i.test(source);
  if (!isUrl && /^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    throw new UsageError(`models add: only http:// and https:// URLs or file paths, not ${source}`);
  }
  const name = opts.name ?? defaultName(source);
  const want = opts.sha256?.toLowerCase();
  if (want !== undefined && !/^[0-9a-f]{64}$/.test(want)) {
    throw new UsageError("models add: --sha256 needs 64 hexadecimal digits");
  }
  store.path(name); // checks the name
  const existing = await store.get(name);
  if (existing && !opts.force) {
    throw new UsageError(
      `models add: ${
        JSON.stringify(name)
      } is already in the store (sha256 ${existing.sha256}); use --force to replace it or --name to pick another name`,
      1,
    );
  }
  await store.ensureDir();
  const part = store.partPath(name);
  const bar = progressBar(name);
  const log = (line: string) => {
    bar.clear();
    console.error(`clawcage models: ${line}`);
  };
  let got: { sha256: string; size: number };
  try {
    got = isUrl
      ? await download(source, part, bar.update, log)
      : await copyInto(source, part, bar.update);
  } finally {
    bar.done();
  }
  if (want !== undefined && got.sha256 !== want) {
    await Deno.remove(part).catch(() => {});
    throw new StoreError(
      `SHA-256 mismatch for ${source}: expected ${want}, got ${got.sha256}; the file was discarded`,
    );
  }
  let manifest: ModelManifest;
  try {
    manifest = await store.commit(name, {
      sha256: got.sha256,
      size: got.size,
      source: isUrl ? source : await Deno.realPath(source),
      verified: want !== undefined,
    });
  } catch (e) {
    await Deno.remove(part).catch(() => {});
    throw e instanceof StoreError ? new StoreError(`${source}: ${e.message}`) : e;
  }
  if (opts.json) {
    printJson({ ...manifest, path: store.path(name) });
  } else {
    console.log(
      `added ${name} (${formatBytes(manifest.size)}, sha256 ${manifest.sha256}${
        manifest.verified ? ", verified" : ", not verified: no --sha256 given"
      }) at ${store.path(name)}`,
    );
  }
  return 0;
}

async function remove(store: ModelStore, name: string, json: boolean): Promise<number> {
  const m = await store.remove(name);
  if (json) printJson({ removed: m.name, path: store.path(m.name) });
  else console.log(`removed ${m.name} (${formatBytes(m.size)}) from ${store.dir}`);
  return 0;
}

/** A progress bar on a terminal; a line every 10% otherwise. */
function progressBar(label: string): { update: Progress; clear(): void; done(): void } {
  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  const started = performance.now();
  let last = 0;
  let lastDecile = -1;
  let shown = false;
  const write = (s: string) => Deno.stderr.writeSync(enc.encode(s));
  const clear = () => {
    if (tty && shown) write("\r\x1b[2K");
    shown = false;
  };
  const update: Progress = (done, total) => {
    const now = performance.now();
    const pct = total ? Math.floor((done / total) * 100) : null;
    const rate = done / Math.max((now - started) / 1000, 0.001);
    if (tty) {
      if (now - last < 100 && done !== total) return;
      last = now;
      const width = 30;
      const fill = pct === null ? 0 : Math.round((pct / 100) * width);
      const bar = pct === null ? "" : `[${"#".repeat(fill)}${".".repeat(width - fill)}] ${pct}% `;
      write(
        `\r\x1b[2K${label} ${bar}${formatBytes(done)}${total ? ` / ${formatBytes(total)}` : ""}  ${
          formatBytes(rate)
        }/s`,
      );
      shown = true;
    } else if (pct !== null && Math.floor(pct / 10) > lastDecile) {
      lastDecile = Math.floor(pct / 10);
      write(`${label}: ${pct}% (${formatBytes(done)} / ${formatBytes(total!)})\n`);
    }
  };
  return {
    update,
    clear,
    done() {
      if (tty && shown) write("\n");
      shown = false;
    },
  };
}
