// `clawcage __pdp`: the policy-decision process. Started by the supervisor (core/pdp/client.ts)
// with its stdin and stdout as the control pipe. It reads the policy from that pipe, compiles
// it, creates its decision socket, locks itself down (core/pdp/lockdown.ts), and only then
// answers decisions. Reloads come only through the control pipe.

import type { Decision, DecisionRequest } from "../policy/decision.ts";
import {
  type ControlReply,
  type ControlRequest,
  LineSplitter,
  MAX_CONTROL_LINE,
  MAX_REASON,
  MAX_REQUEST_LINE,
  parseRequest,
  readLines,
  writeAllBytes,
  writeLine,
} from "./protocol.ts";
import { lockDown } from "./lockdown.ts";
import { trace } from "../start_trace.ts";

/** A parsed and compiled policy, ready to answer. */
export interface LoadedPolicy {
  /** The parsed policy with defaults applied (used to find what a reload changes). */
  sections: Record<string, unknown>;
  decide(req: DecisionRequest): Decision;
}

/** Parses and compiles policy text; throws an Error whose message is the user-facing text. */
export type PolicyLoader = (text: string, file: string) => LoadedPolicy;

/** Sections a reload may change; every other section is fixed for the sandbox's lifetime. */
export const RELOADABLE_SECTIONS = ["network_policies", "privacy"] as const;

/** Top-level sections whose value differs between two parsed policies, sorted. */
export function changedSections(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).sort();
}

/** Why a reload from `before` to `after` is refused, or null when it may apply. */
export function reloadRefusal(before: LoadedPolicy, after: LoadedPolicy): string | null {
  const fixed = changedSections(before.sections, after.sections)
    .filter((k) => !(RELOADABLE_SECTIONS as readonly string[]).includes(k));
  if (fixed.length === 0) return null;
  return `reload refused: ${fixed.join(", ")} ${
    fixed.length === 1 ? "is" : "are"
  } fixed while the sandbox runs (only ${
    RELOADABLE_SECTIONS.join(" and ")
  } reload); restart the sandbox to change ${fixed.length === 1 ? "it" : "them"}`;
}

/** Answers one request line. Never throws: a bad line or a failing decide is an error reply. */
export function answerLine(policy: LoadedPolicy, line: string): string {
  const parsed = parseRequest(line);
  if ("error" in parsed) return JSON.stringify(parsed);
  try {
    const decision = policy.decide(parsed.req);
    if (decision.reason.length > MAX_REASON) {
      decision.reason = decision.reason.slice(0, MAX_REASON - 1) + "…";
    }
    return JSON.stringify({ id: parsed.id, ...decision });
  } catch (e) {
    return JSON.stringify({ id: parsed.id, error: `decide failed: ${(e as Error).message}` });
  }
}

const encoder = new TextEncoder();

async function serveConnection(conn: Deno.Conn, current: () => LoadedPolicy): Promise<void> {
  const lines = new LineSplitter(MAX_REQUEST_LINE);
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      // Every line of one read is answered in one write.
      let batch = "";
      for (const line of lines.push(buf.subarray(0, n))) {
        batch += (typeof line === "string"
          ? answerLine(current(), line)
          : JSON.stringify({ id: null, error: `line longer than ${MAX_REQUEST_LINE} bytes` })) +
          "\n";
      }
      if (batch !== "") await writeAllBytes(conn, encoder.encode(batch));
    }
  } catch {
    // The peer reset the connection or went away mid-write: nothing left to answer.
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

/**
 * Runs every code path of the decision socket once before lockdown (accept, read, decide,
 * error reply, write, close), so that nothing Deno initialises lazily needs a system call
 * the lockdown forbids.
 */
async function warmUp(listener: Deno.UnixListener, path: string, policy: LoadedPolicy) {
  const accepted = listener.accept();
  const client = await Deno.connect({ transport: "unix", path });
  const served = serveConnection(await accepted, () => policy);
  await writeLine(
    client,
    JSON.stringify({ id: 0, binary: "/warm", host: "warm.invalid", port: 1 }),
  );
  await writeLine(client, "{");
  let answered = 0;
  for await (const _ of readLines(client, MAX_REQUEST_LINE)) if (++answered === 2) break;
  client.close();
  await served;
}

function parseControl(line: string): ControlRequest | null {
  try {
    const v = JSON.parse(line);
    if (typeof v?.policy !== "string" || typeof v?.file !== "string") return null;
    if (v.op === "load" && typeof v.socket === "string") return v;
    if (v.op === "reload") return v;
  } catch { /* not JSON */ }
  return null;
}

/**
 * Runs the PDP until the control pipe closes (the supervisor is gone). Returns the exit code.
 * `load` turns policy text into a LoadedPolicy (the real one is in core/pdp/main.ts).
 */
export async function servePdp(load: PolicyLoader): Promise<number> {
  const reply = (r: ControlReply) => writeLine(Deno.stdout, JSON.stringify(r));
  const control = readLines(Deno.stdin, MAX_CONTROL_LINE);
  const first = await control.next();
  if (first.done) return 1;
  const request = typeof first.value === "string" ? parseControl(first.value) : null;
  if (request === null || request.op !== "load") {
    await reply({ op: "error", error: "expected a load message first" });
    return 2;
  }
  let policy: LoadedPolicy;
  let listener: Deno.UnixListener;
  try {
    trace("load message read");
    policy = load(request.policy, request.file);
    trace("policy compiled");
    try {
      Deno.removeSync(request.socket);
    } catch { /* none left over */ }
    listener = Deno.listen({ transport: "unix", path: request.socket });
    await warmUp(listener, request.socket, policy);
    // Deno sets up its signal machinery (a socketpair) on first use, which the lockdown
    // forbids: use it now. SIGTERM ends the PDP cleanly. The PDP shares the terminal's process
    // group with clawcage: Ctrl-C, Ctrl-\, Ctrl-Z and a hangup are for the agent, not for it.
    Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
    for (const sig of ["SIGINT", "SIGQUIT", "SIGTSTP", "SIGHUP"] as const) {
      Deno.addSignalListener(sig, () => {});
    }
    trace("socket warmed up");
    const lockdown = lockDown();
    trace("locked down");
    await reply({ op: "ready", pid: Deno.pid, lockdown });
  } catch (e) {
    await reply({ op: "error", error: (e as Error).message });
    return 1;
  }

  void (async () => {
    for await (const conn of listener) void serveConnection(conn, () => policy);
  })().catch((e) => {
    console.error(`clawcage __pdp: decision socket failed: ${(e as Error).message}`);
    Deno.exit(1);
  });

  for await (const line of control) {
    const msg = typeof line === "string" ? parseControl(line) : null;
    if (msg === null || msg.op !== "reload") {
      await reply({ op: "error", error: "expected a reload message" });
      continue;
    }
    try {
      const next = load(msg.policy, msg.file);
      const refusal = reloadRefusal(policy, next);
      if (refusal) {
        await reply({ op: "error", error: refusal });
        continue;
      }
      const changed = changedSections(policy.sections, next.sections);
      policy = next;
      await reply({ op: "reloaded", changed });
    } catch (e) {
      await reply({ op: "error", error: (e as Error).message });
    }
  }
  return 0;
}
