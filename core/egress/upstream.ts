// Opening the upstream connection: resolve the name (or take the IP literal), run every address
// through the SSRF guard, then connect to an address that was checked (never to the name, so a
// second resolution cannot rebind it). Optionally TLS with normal certificate verification
// against the name the agent asked for.

import * as net from "node:net";
import * as tls from "node:tls";
import type { HostKind } from "./host.ts";
import type { ReadFeed } from "./reader.ts";
import type { Resolver } from "./resolve.ts";
import { AllowedIps, checkAddresses, type SsrfRefusal } from "./ssrf.ts";

export interface Target {
  host: string;
  kind: HostKind;
  port: number;
}

export type UpstreamResult =
  | { ok: true; sock: net.Socket | tls.TLSSocket; ip: string }
  /** status: 403 (SSRF refusal), 502 (resolution or connection failed), 504 (timeout). */
  | { ok: false; status: 403 | 502 | 504; reason: string; ip?: string; refusal?: SsrfRefusal };

/** Resolves and checks; returns the addresses the proxy may connect to. */
export async function resolveChecked(
  target: Target,
  allowedIps: string[],
  resolver: Resolver,
): Promise<
  { ok: true; ips: string[] } | {
    ok: false;
    status: 403 | 502;
    reason: string;
    refusal?: SsrfRefusal;
  }
> {
  let ips: string[];
  if (target.kind === "name") {
    try {
      ips = await resolver(target.host);
    } catch (e) {
      return {
        ok: false,
        status: 502,
        reason: `cannot resolve ${target.host}: ${(e as Error).message}`,
      };
    }
  } else {
    ips = [target.host];
  }
  let allowed: AllowedIps;
  try {
    allowed = new AllowedIps(allowedIps);
  } catch (e) {
    return { ok: false, status: 403, reason: `bad allowed_ips in policy: ${(e as Error).message}` };
  }
  const checked = checkAddresses(ips, allowed);
  if (!checked.ok) {
    const r = checked.refusal;
    return {
      ok: false,
      status: 403,
      reason: `${target.host} resolves to ${r.ip || "nothing"} (${r.reason}); ` +
        `add it to the endpoint's allowed_ips to permit it`,
      refusal: r,
    };
  }
  return checked;
}

function connectOne(
  ip: string,
  port: number,
  timeoutMs: number,
  feed?: ReadFeed,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: ip, port, ...(feed ? { onread: feed } : {}) });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`connect to ${ip}:${port} timed out`), { timeout: true }));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.setNoDelay(true);
      resolve(sock);
    });
    sock.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Upgrades a connected socket to TLS, verifying the certificate for `host`. */
export function startTls(
  sock: net.Socket,
  host: string,
  kind: HostKind,
  ca: string[] | undefined,
  timeoutMs: number,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({
      socket: sock,
      ...(kind === "name" ? { servername: host } : {}),
      ...(ca ? { ca } : {}),
      ALPNProtocols: ["http/1.1"],
      rejectUnauthorized: true,
      checkServerIdentity: (_name, cert) => tls.checkServerIdentity(host, cert),
    });
    const timer = setTimeout(() => {
      t.destroy();
      reject(new Error(`TLS handshake with ${host} timed out`));
    }, timeoutMs);
    t.once("secureConnect", () => {
      clearTimeout(timer);
      resolve(t);
    });
    t.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * Resolves, checks and connects (first address that answers). With `feed`, the socket reads
 * into it (see ReadFeed; not for a socket that TLS will run over).
 */
export async function openUpstream(
  target: Target,
  allowedIps: string[],
  resolver: Resolver,
  timeoutMs: number,
  feed?: ReadFeed,
): Promise<UpstreamResult> {
  const r = await resolveChecked(target, allowedIps, resolver);
  if (!r.ok) return { ...r, ...(r.refusal?.ip ? { ip: r.refusal.ip } : {}) };
  let last: Error | null = null;
  for (const ip of r.ips) {
    try {
      return { ok: true, sock: await connectOne(ip, target.port, timeoutMs, feed), ip };
    } catch (e) {
      last = e as Error;
      if ((e as { timeout?: boolean }).timeout) {
        return { ok: false, status: 504, reason: last.message, ip };
      }
    }
  }
  return {
    ok: false,
    status: 502,
    reason: `cannot connect to ${target.host}:${target.port}: ${last?.message ?? "no address"}`,
    ip: r.ips[0],
  };
}
