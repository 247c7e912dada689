// Runs the clawcage CLI from source, exactly as `deno task cli` does (same permission flags).

import { selfCommand } from "../../core/self.ts";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; stdin?: string; wrap?: string[] } = {},
): Promise<CliResult> {
  const argv = [...(opts.wrap ?? []), ...selfCommand(args)];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
