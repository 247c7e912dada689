// What `clawcage doctor` says about the audit trail: where the log and key go and whether they
// can be written, whether kernel Landlock denial records can be read here (and why not), and
// whether the export targets answer.

import { dirname, join } from "node:path";
import { AuditSocket } from "../../ffi/audit_netlink.ts";
import { tryLockExclusive } from "../../ffi/flock.ts";
import { abiVersion } from "../../ffi/landlock.ts";
import { kernelAuditLeftover } from "./kernel_audit_lease.ts";
import { KEY_FILE, PUBLIC_KEY_FILE, SIGN_KEY_FILE } from "./key.ts";
import { LOCK_FILE } from "./segments.ts";
import type { AuditSettings } from "./settings.ts";
import { otlpBody } from "./export/otlp.ts";

export interface AuditCheck {
  name: string;
  status: "ok" | "missing" | "warn";
  detail: string;
  fix: string;
}

/** The nearest existing directory at or above `path`. */
function existingAncestor(path: string): string {
  let p = path;
  for (;;) {
    try {
      if (Deno.statSync(p).isDirectory) return p;
    } catch { /* keep climbing */ }
    const up = dirname(p);
    if (up === p) return p;
    p = up;
  }
}

/** Creates and removes a file in `dir`: the only honest answer to "can I write here?". */
function probeWrite(dir: string): string | null {
  const probe = join(dir, `.clawcage-doctor-${Deno.pid}`);
  try {
    Deno.writeFileSync(probe, new Uint8Array(1), { createNew: true, mode: 0o600 });
    Deno.removeSync(probe);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

function dirCheck(name: string, dir: string, what: string): AuditCheck {
  const at = existingAncestor(dir);
  const err = probeWrite(at);
  if (err) {
    return {
      name,
      status: "missing",
      detail: `${dir}: cannot write ${at === dir ? "it" : `${at} (to create it)`}: ${err}`,
      fix: `run as root, or point ${what} at a writable directory`,
    };
  }
  return {
    name,
    status: "ok",
    detail: `${dir} (${at === dir ? "writable" : `will be created in ${at}`})`,
    fix: "",
  };
}

function logCheck(s: AuditSettings): AuditCheck {
  const c = dirCheck("audit log", s.dir, "--audit-dir or audit.log_dir");
  if (c.status !== "ok") return c;
  try {
    if (Deno.statSync(s.dir).isDirectory) {
      const lock = tryLockExclusive(join(s.dir, LOCK_FILE));
      if (!lock && s.defaultDir) {
        // Runs alongside it write their own logs below it (RunAudit.open): nothing to fix.
        return {
          ...c,
          detail: `${c.detail}; in use by a running clawcage (another run now writes its own ` +
            `log below it)`,
        };
      }
      if (!lock) {
        return {
          ...c,
          status: "warn",
          detail: `${s.dir}: in use by a running clawcage (one writer per directory)`,
          fix: "give a second concurrent run its own --audit-dir DIR, or run the agents under " +
            "clawcage service (each agent gets its own log)",
        };
      }
      lock.release();
    }
  } catch { /* does not exist yet */ }
  return c;
}

function keyCheck(s: AuditSettings): AuditCheck {
  const c = dirCheck("audit key", s.keyDir, "audit.key_dir");
  if (c.status !== "ok") return c;
  let present = 0;
  for (const name of [KEY_FILE, SIGN_KEY_FILE]) {
    const path = join(s.keyDir, name);
    let mode: number;
    try {
      mode = Deno.statSync(path).mode ?? 0;
    } catch {
      continue;
    }
    present++;
    if ((mode & 0o077) !== 0) {
      return {
        ...c,
        status: "missing",
        detail: `${path} has mode ${(mode & 0o777).toString(8)}`,
        fix: `chmod 600 ${path}`,
      };
    }
  }
  return {
    ...c,
    detail: present === 2
      ? `${c.detail}; HMAC and Ed25519 keys present (mode 600); give auditors ` +
        join(s.keyDir, PUBLIC_KEY_FILE)
      : `${c.detail}; keys are created on first use`,
  };
}

async function denialsCheck(s: AuditSettings): Promise<AuditCheck> {
  const name = "landlock denials";
  const abi = abiVersion();
  if (s.kernelDenials === "off") {
    return { name, status: "ok", detail: "not read (audit.kernel_denials: off)", fix: "" };
  }
  if (abi < 7) {
    return {
      name,
      status: "warn",
      detail: `not available: Landlock ABI ${abi} does not report denials (needs ABI 7)`,
      fix: "a kernel >= 6.15 with CONFIG_AUDIT reports Landlock denials",
    };
  }
  if (Deno.uid() !== 0) {
    return {
      name,
      status: "warn",
      detail: "not recorded: reading kernel audit records needs root (CAP_AUDIT_READ)",
      fix: "run clawcage as root (or from the systemd service)",
    };
  }
  let sock: AuditSocket;
  try {
    sock = AuditSocket.open(0);
  } catch (e) {
    return {
      name,
      status: "warn",
      detail: `not available: no kernel audit socket (${(e as Error).message})`,
      fix: "a kernel with CONFIG_AUDIT=y",
    };
  }
  try {
    const st = await sock.status();
    if (st.enabled !== 0 && kernelAuditLeftover()) {
      return {
        name,
        status: "warn",
        detail: "kernel auditing is on only because a clawcage run that turned it on was killed " +
          "before it could turn it off again",
        fix:
          "the next clawcage run that reads denials turns it off (or adopts it); auditctl -e 0 " +
          "now",
      };
    }
    if (st.enabled !== 0) {
      return {
        name,
        status: "ok",
        detail: `kernel auditing is on: file-access denials are recorded with the sandbox id` +
          (st.pid ? ` (an audit daemon, pid ${st.pid}, also receives them)` : ""),
        fix: "",
      };
    }
    return s.kernelDenials === "enable"
      ? {
        name,
        status: "ok",
        detail: "kernel auditing is off; clawcage run turns it on (audit.kernel_denials: enable)",
        fix: "",
      }
      : {
        name,
        status: "warn",
        detail: "kernel auditing is off, so the kernel reports no Landlock denials",
        fix: "auditctl -e 1, or set audit.kernel_denials: enable in the policy",
      };
  } catch (e) {
    return {
      name,
      status: "warn",
      detail: `cannot query kernel audit status: ${(e as Error).message}`,
      fix: "",
    };
  } finally {
    sock.close();
  }
}

async function tcpReachable(host: string, port: number, ms: number): Promise<string | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const conn = await Promise.race([
      Deno.connect({ hostname: host, port }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
    conn.close();
    return null;
  } catch (e) {
    return (e as Error).message;
  } finally {
    clearTimeout(timer);
  }
}

async function exportChecks(s: AuditSettings, timeoutMs: number): Promise<AuditCheck[]> {
  const out: AuditCheck[] = [];
  const sys = s.export?.syslog;
  if (sys) {
    const name = "audit syslog";
    const [, scheme, rest] = /^(unix|udp|tcp):\/\/(.+)$/.exec(sys.target)!;
    if (scheme === "unix") {
      let info: Deno.FileInfo | null = null;
      try {
        info = Deno.statSync(rest);
      } catch { /* missing */ }
      out.push(
        info?.isSocket
          ? { name, status: "ok", detail: `${sys.target}: socket present`, fix: "" }
          : {
            name,
            status: "warn",
            detail: `${sys.target}: ${info ? "not a socket" : "no such socket"}`,
            fix: "start the syslog daemon (rsyslog, syslog-ng, journald) or fix the target",
          },
      );
    } else {
      const i = rest.lastIndexOf(":");
      const host = rest.slice(0, i).replace(/^\[|\]$/g, "");
      const port = Number(rest.slice(i + 1));
      if (scheme === "udp") {
        out.push({
          name,
          status: "ok",
          detail: `${sys.target}: UDP cannot be checked (no acknowledgements); records that ` +
            `the collector misses are not noticed`,
          fix: "",
        });
      } else {
        const err = await tcpReachable(host, port, timeoutMs);
        out.push(
          err
            ? {
              name,
              status: "warn",
              detail: `${sys.target}: not reachable: ${err}`,
              fix: "records queue and are retried; check the collector",
            }
            : { name, status: "ok", detail: `${sys.target}: accepts connections`, fix: "" },
        );
      }
    }
  }
  const otlp = s.export?.otlp;
  if (otlp) {
    const name = "audit otlp";
    try {
      // An empty export request: a collector answers 2xx without storing anything.
      const headers: Record<string, string> = {
        ...otlp.headers,
        "content-type": "application/json",
      };
      for (const [h, env] of Object.entries(otlp.headers_env)) {
        const v = Deno.env.get(env);
        if (v !== undefined) headers[h] = v;
      }
      const body = otlpBody([], "doctor");
      body.resourceLogs = [];
      const res = await fetch(otlp.url, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body?.cancel();
      out.push(
        res.ok ? { name, status: "ok", detail: `${otlp.url}: HTTP ${res.status}`, fix: "" } : {
          name,
          status: "warn",
          detail: `${otlp.url}: HTTP ${res.status}`,
          fix: res.status === 401 || res.status === 403
            ? "check the credentials in audit.export.otlp.headers_env"
            : "check the URL (OTLP/HTTP logs: .../v1/logs)",
        },
      );
    } catch (e) {
      out.push({
        name,
        status: "warn",
        detail: `${otlp.url}: not reachable: ${(e as Error).message}`,
        fix: "records queue and are retried; check the collector",
      });
    }
  }
  return out;
}

export async function auditChecks(s: AuditSettings, timeoutMs = 2000): Promise<AuditCheck[]> {
  if (!s.enabled) {
    return [{ name: "audit", status: "warn", detail: "disabled by the policy", fix: "" }];
  }
  return [
    logCheck(s),
    keyCheck(s),
    await denialsCheck(s),
    ...await exportChecks(s, timeoutMs),
  ];
}
