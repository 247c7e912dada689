// Start-up tracing for `clawcage run`: with CLAWCAGE_TRACE_START=1 every process of a run
// (supervisor, policy-decision process, stage) prints its phases on stderr as
//   clawcage: trace: +123.4 ms supervisor policy loaded
// on ONE timeline: milliseconds since the supervisor's runtime started. The supervisor replaces
// the variable's value with its own start (epoch ms) before it starts the other processes
// (core/self.ts passes it on), so their lines line up with its own. Off: one env lookup.

export const TRACE_START_ENV = "CLAWCAGE_TRACE_START";

let origin: number | null | undefined;
let role = "supervisor";

function traceOrigin(): number | null {
  if (origin !== undefined) return origin;
  const value = Deno.env.get(TRACE_START_ENV);
  if (!value) return origin = null;
  // "1" (or any small number): this process is the first of the run; its start is the origin.
  const given = Number(value);
  origin = Number.isFinite(given) && given > 1e12 ? given : performance.timeOrigin;
  Deno.env.set(TRACE_START_ENV, String(origin));
  return origin;
}

/** Names this process in trace lines (e.g. "stage", "pdp"); the default is "supervisor". */
export function traceRole(name: string): void {
  role = name;
}

/** Whether tracing is on (CLAWCAGE_TRACE_START set). */
export function tracing(): boolean {
  return traceOrigin() !== null;
}

/** Prints one trace line when tracing is on. */
export function trace(phase: string): void {
  const start = traceOrigin();
  if (start === null) return;
  const at = performance.timeOrigin + performance.now() - start;
  console.error(`clawcage: trace: +${at.toFixed(1)} ms ${role} ${phase}`);
}
