// Small helpers shared by the CLI commands.

/** A mistake the user can fix: printed as one line, never as a stack trace. */
export class UsageError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

export function fail(message: string): never {
  throw new UsageError(message);
}

/** Embedded policies (compiled into the binary with `--include policies/`). */
export function embeddedPolicyPath(name: string): string {
  return new URL(`../../policies/${name}`, import.meta.url).pathname;
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}
