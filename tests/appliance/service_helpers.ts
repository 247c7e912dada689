// Helpers for the service tests: a `clawcage service` process from source, status polling and
// a /proc scan for processes that belong to a test.

import { selfCommand } from "../../core/self.ts";
import type { ServiceStatus } from "../../core/service/service.ts";
import { readStatus } from "../../core/service/status_socket.ts";

export class ServiceProcess {
  readonly child: Deno.ChildProcess;
  output = "";
  readonly #copies: Promise<void>[];

  constructor(configPath: string, env: Record<string, string> = {}) {
    const argv = selfCommand(["service", "--config", configPath]);
    this.child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#copies = [this.child.stdout, this.child.stderr].map(async (s) => {
      for await (const chunk of s.pipeThrough(new TextDecoderStream())) this.output += chunk;
    });
  }

  /** Waits (up to `ms`) until the output so far matches `re`; the caller asserts the match. */
  async waitForOutput(re: RegExp, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!re.test(this.output) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Waits for the process to exit and for all its output. */
  async exit(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await Promise.all(this.#copies);
    return status;
  }
}

export async function status(socket: string): Promise<ServiceStatus> {
  return await readStatus(socket) as ServiceStatus;
}

/** Polls the status socket until `ok` holds (or fails after `ms`, showing the last status). */
export async function waitFor(
  socket: string,
  ok: (s: ServiceStatus) => boolean,
  what: string,
  ms = 60_000,
  svc?: ServiceProcess,
): Promise<ServiceStatus> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const s = await status(socket);
      last = s;
      if (ok(s)) return s;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `timed out waiting for ${what}; last status: ${JSON.stringify(last)}\n${svc?.output ?? ""}`,
  );
}

/** PIDs of processes whose command line or environment mentions `marker`. */
export function processesMentioning(marker: string): number[] {
  const found: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    for (const f of ["cmdline", "environ"]) {
      try {
        const text = new TextDecoder().decode(Deno.readFileSync(`/proc/${e.name}/${f}`));
        if (text.includes(marker)) {
          found.push(Number(e.name));
          break;
        }
      } catch { /* gone, or not ours to read */ }
    }
  }
  return found;
}

/** Waits until no process mentions `marker`; returns those left after `ms`. */
export async function waitNoProcesses(marker: string, ms = 10_000): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = processesMentioning(marker);
  while (left.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    left = processesMentioning(marker);
  }
  return left;
}

export function describe(pids: number[]): string {
  return pids.map((p) => {
    try {
      return `${p}: ${Deno.readTextFileSync(`/proc/${p}/cmdline`).replaceAll("\0", " ")}`;
    } catch {
      return `${p}: (gone)`;
    }
  }).join("\n");
}
