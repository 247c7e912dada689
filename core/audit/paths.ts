// Default places for the log and its key: outside anything a sandbox is given.

import { join } from "node:path";

function stateHome(): string {
  const xdg = Deno.env.get("XDG_STATE_HOME");
  if (xdg) return xdg;
  return join(Deno.env.get("HOME") ?? "/tmp", ".local", "state");
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** Root: /var/log/clawcage/audit. Others: $XDG_STATE_HOME/clawcage/audit. */
export function defaultAuditDir(): string {
  return isRoot() ? "/var/log/clawcage/audit" : join(stateHome(), "clawcage", "audit");
}

/** Root: /var/lib/clawcage/audit-key. Others: $XDG_STATE_HOME/clawcage/audit-key. */
export function defaultKeyDir(): string {
  return isRoot() ? "/var/lib/clawcage/audit-key" : join(stateHome(), "clawcage", "audit-key");
}
