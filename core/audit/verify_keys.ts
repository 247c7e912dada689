// Which keys `audit verify` uses for a log when none is named on the command line: those in the
// key directory its writer sealed into, found the way the writer chose it (the policy's
// audit.key_dir, else the default key directory, also under `clawcage run --audit-dir DIR`).

import { join } from "node:path";
import { headPath, KEY_FILE, PUBLIC_KEY_FILE } from "./key.ts";
import { logIdOf } from "./read.ts";

export interface FoundKeys {
  keyFile?: string;
  pubFile?: string;
  /** Why these keys belong to the log (for a note), or null when none were found. */
  source: string | null;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The keys in `keyDir` for the log at `log`. They are used when `named` says why the writer
 * used that directory (the user gave its policy, or the log is the default log), or when the
 * directory holds this log's sealed head (head-<log_id>.json), which only its writer puts there.
 * Otherwise none: a key of another log would report every seal as broken.
 */
export function writerKeys(log: string, keyDir: string, named: string | null): FoundKeys {
  const keyFile = join(keyDir, KEY_FILE);
  const pubFile = join(keyDir, PUBLIC_KEY_FILE);
  const found: FoundKeys = {
    ...(exists(keyFile) ? { keyFile } : {}),
    ...(exists(pubFile) ? { pubFile } : {}),
    source: null,
  };
  if (!found.keyFile && !found.pubFile) return found;
  let logId: string | null = null;
  try {
    logId = logIdOf(log);
  } catch { /* unreadable: verify reports it */ }
  if (logId && exists(headPath(keyFile, logId))) {
    found.source = `keys from ${keyDir}, which holds this log's sealed head`;
  } else if (named) {
    found.source = `keys from ${keyDir} (${named})`;
  } else {
    return { source: null };
  }
  return found;
}
