// The caller line the sandbox's bridge sends before the client's bytes on each connection:
//   CLAWCAGE-CALLER {"pid":123,"exe":"/usr/bin/curl","sha256":"<hex or empty>"}\r\n
// It tells the proxy which sandboxed program opened the connection, for `binaries:` rules.
// Optional: "ancestors": ["/usr/bin/node", ...], the parents' executables, nearest first.

import type { StreamReader } from "./reader.ts";
import { HttpParseError } from "./http_parse.ts";

export const CALLER_PREFIX = "CLAWCAGE-CALLER ";
/** Longest JSON part of a caller line. */
export const MAX_CALLER_JSON = 4096;

export interface Caller {
  pid?: number;
  /** Absolute path of the executable; "" when unknown. */
  exe: string;
  sha256?: string;
  /** Executables of the parent processes, nearest first (optional; for `binaries` rules). */
  ancestors?: string[];
}

/** Most ancestors a caller line may name. */
export const MAX_ANCESTORS = 64;

export const UNKNOWN_CALLER: Caller = { exe: "" };

/** Parses the JSON part of a caller line; throws on anything but the documented shape. */
export function parseCallerJson(json: string): Caller {
  const v = JSON.parse(json);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
  const { pid, exe, sha256, ancestors } = v as Record<string, unknown>;
  if (pid !== undefined && !(Number.isSafeInteger(pid) && (pid as number) > 0)) {
    throw new Error("bad pid");
  }
  if (typeof exe !== "string" || (exe !== "" && !exe.startsWith("/")) || exe.includes("\0")) {
    throw new Error("bad exe");
  }
  if (sha256 !== undefined && !(typeof sha256 === "string" && /^([0-9a-f]{64})?$/.test(sha256))) {
    throw new Error("bad sha256");
  }
  if (
    ancestors !== undefined &&
    !(Array.isArray(ancestors) && ancestors.length <= MAX_ANCESTORS &&
      ancestors.every((a) => typeof a === "string" && a.startsWith("/") && !a.includes("\0")))
  ) {
    throw new Error("bad ancestors");
  }
  return {
    ...(pid !== undefined ? { pid: pid as number } : {}),
    exe,
    ...(sha256 ? { sha256: sha256 as string } : {}),
    ...(Array.isArray(ancestors) && ancestors.length ? { ancestors: ancestors as string[] } : {}),
  };
}

/**
 * Reads the caller line if the connection starts with one. A connection that does not start
 * with the prefix is an unknown caller (its bytes stay for the HTTP parser). A line that starts
 * with the prefix but is malformed also yields the unknown caller (binaries rules cannot match);
 * the line itself is consumed. With `trusted` false (a listener the agent can reach directly)
 * a caller line is refused: the agent must not be able to claim another program's identity.
 */
export async function readCaller(
  reader: StreamReader,
  deadline: number,
  trusted: boolean,
): Promise<Caller> {
  const buf = await reader.peek(CALLER_PREFIX.length, deadline);
  const start = buf.subarray(0, CALLER_PREFIX.length).toString("latin1");
  if (start !== CALLER_PREFIX) return UNKNOWN_CALLER;
  if (!trusted) throw new HttpParseError(400, "caller line on a listener that does not trust it");
  const line = await reader.readLine(CALLER_PREFIX.length + MAX_CALLER_JSON, deadline);
  try {
    return parseCallerJson(line.slice(CALLER_PREFIX.length));
  } catch {
    return UNKNOWN_CALLER;
  }
}
