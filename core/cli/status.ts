// `clawcage status [--json]`: asks the running `clawcage service` over its status socket.

import { parseArgs } from "node:util";
import { DEFAULT_RUNTIME_DIR, STATUS_SOCKET } from "../service/config.ts";
import type { ServiceStatus } from "../service/service.ts";
import type { ChildStatus } from "../service/child.ts";
import { readStatus, StatusSocketError } from "../service/status_socket.ts";
import { printJson, UsageError } from "./common.ts";

export const STATUS_HELP = `Usage: clawcage status [options]

Shows the agents of the running clawcage service (state, pid, restarts, uptime, last exit),
the router and its backends, and the denials of the last hour. Needs root (the status socket
is root-only).

Options:
      --json              print the service's answer as JSON
      --runtime-dir DIR   where the service's socket is (default ${DEFAULT_RUNTIME_DIR})
  -h, --help              show this help

Exit status: 0 when the service answered, 3 when no service is running, 1 on other errors.`;

export async function statusCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        json: { type: "boolean" },
        "runtime-dir": { type: "string", default: DEFAULT_RUNTIME_DIR },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (see clawcage status --help)`);
  }
  if (values.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  const path = `${values["runtime-dir"]}/${STATUS_SOCKET}`;
  let status: ServiceStatus;
  try {
    status = await readStatus(path) as ServiceStatus;
  } catch (e) {
    if (e instanceof StatusSocketError) {
      throw new UsageError(e.message, e.message.includes("not running") ? 3 : 1);
    }
    throw e;
  }
  if (values.json) printJson(status);
  else console.log(formatStatus(status));
  return 0;
}

export function duration(s: number | null): string {
  if (s === null) return "-";
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

function lastExit(c: ChildStatus): string {
  const e = c.last_exit;
  if (!e) return "-";
  return `${e.signal ?? `code ${e.code}`} after ${duration(Math.floor(e.ran_ms / 1000))}`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

function stateText(c: ChildStatus): string {
  if (c.state !== "backoff" || !c.next_start) return c.state;
  const wait = Math.max(0, Math.ceil((Date.parse(c.next_start) - Date.now()) / 1000));
  return `backoff (${c.backoff_ms} ms, next start in ${wait}s)`;
}

export function formatStatus(s: ServiceStatus): string {
  const out: string[] = [
    `clawcage service: pid ${s.pid}, up ${duration(s.uptime_s)}, config ${s.config}`,
    "",
  ];
  const children: ChildStatus[] = [...s.agents, ...(s.router ? [s.router] : [])];
  if (children.length) {
    out.push(table([
      ["NAME", "STATE", "PID", "RESTARTS", "UPTIME", "LAST EXIT"],
      ...children.map((c) => [
        c.name,
        stateText(c),
        c.pid === null ? "-" : String(c.pid),
        String(c.restarts),
        duration(c.uptime_s),
        lastExit(c),
      ]),
    ]));
  } else {
    out.push("no agents configured");
  }
  if (s.router) {
    out.push("", `router: listening on ${s.router.listen} (policy ${s.router.policy})`);
    for (const b of s.router.backends) {
      out.push(
        `  backend ${b.name}: ${b.role}, ${b.type}${b.base_url ? ` ${b.base_url}` : ""}${
          b.model ? `, model ${b.model}` : ""
        }`,
      );
    }
  }
  const d = s.denials_last_hour;
  out.push(
    "",
    d.count === null
      ? `denials in the last hour: unavailable (${d.unavailable})`
      : `denials in the last hour: ${d.count} (audit log ${d.source})`,
  );
  if (s.last_reload) {
    const r = s.last_reload;
    out.push(
      r.ok
        ? `last reload ${r.at}: ${r.changes.length ? r.changes.join("; ") : "no changes"}`
        : `last reload ${r.at}: REFUSED: ${r.error}`,
    );
  }
  return out.join("\n");
}
