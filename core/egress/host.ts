// Host names and IP literals as the egress proxy accepts them. One canonical form per
// destination: lower-case names without a trailing dot, dotted-quad IPv4, compressed IPv6
// (IPv4-mapped IPv6 becomes the IPv4 it maps). IPv4 literals in the forms inet_aton() accepts
// (octal, hex, integer, shortened) are turned into dotted quads, so that policy and the SSRF
// guard see the address the kernel would connect to, never a name a resolver could reinterpret.

import { isIPv4, isIPv6 } from "node:net";

export type HostKind = "name" | "ipv4" | "ipv6";

export interface ParsedHost {
  /** Canonical form (see above). IPv6 without brackets. */
  host: string;
  kind: HostKind;
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** One number of an inet_aton-style IPv4 literal: decimal, 0x hex or 0-prefixed octal. */
function ipv4Part(s: string): number | null {
  if (/^0x[0-9a-f]*$/.test(s)) return s.length === 2 ? 0 : parseInt(s.slice(2), 16);
  if (/^0[0-7]+$/.test(s)) return parseInt(s, 8);
  if (/^(0|[1-9][0-9]*)$/.test(s)) return s.length > 15 ? Infinity : parseInt(s, 10);
  return null;
}

/**
 * Parses an IPv4 literal in any form inet_aton() accepts ("127.1", "0x7f.0.0.1", "017700000001",
 * "2130706433"). Returns the dotted quad, or null when `s` is not such a literal. Throws when it
 * looks numeric but is out of range (so it is neither a valid address nor a valid name).
 */
export function parseLooseIPv4(s: string): string | null {
  const parts = s.split(".");
  if (parts.length > 4) return null;
  const nums = parts.map(ipv4Part);
  if (nums.some((n) => n === null)) return null;
  const n = nums as number[];
  const last = n[n.length - 1];
  const lead = n.slice(0, -1);
  if (lead.some((x) => x > 255) || last >= 256 ** (5 - n.length)) {
    throw new Error(`IPv4 literal out of range: ${s}`);
  }
  let value = last;
  lead.forEach((x, i) => value += x * 256 ** (3 - i));
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

/** The 16 bytes of an IPv6 address (without brackets or zone). */
export function ipv6Bytes(s: string): Uint8Array {
  if (!isIPv6(s)) throw new Error(`not an IPv6 address: ${s}`);
  let text = s;
  const out = new Uint8Array(16);
  const dotted = text.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  let tail: number[] = [];
  if (dotted) {
    text = dotted[1] + "0:0";
    tail = dotted[2].split(".").map(Number);
  }
  const [head, rest] = text.includes("::") ? text.split("::") : [text, null];
  const h = head ? head.split(":") : [];
  const r = rest === null ? [] : rest ? rest.split(":") : [];
  const groups = rest === null ? h : [...h, ...Array(8 - h.length - r.length).fill("0"), ...r];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 255;
  });
  if (tail.length) out.set(tail, 12);
  return out;
}

/** Compressed text form of 16 IPv6 bytes (RFC 5952). */
export function ipv6Text(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** Canonical text of an IP address; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4. */
export function canonicalIp(ip: string): { ip: string; kind: "ipv4" | "ipv6" } {
  if (isIPv4(ip)) return { ip, kind: "ipv4" };
  const b = ipv6Bytes(ip);
  if (b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return { ip: `${b[12]}.${b[13]}.${b[14]}.${b[15]}`, kind: "ipv4" };
  }
  return { ip: ipv6Text(b), kind: "ipv6" };
}

/**
 * Parses the host part of an authority (what comes before ":port"). Accepts DNS names (letters,
 * digits, '-', '_', dots), IPv4 literals in any inet_aton form and bracketed IPv6 without a
 * zone. Throws an Error with a short reason otherwise.
 */
export function parseHost(raw: string): ParsedHost {
  if (raw.startsWith("[")) {
    if (!raw.endsWith("]")) throw new Error("unterminated IPv6 literal");
    const inner = raw.slice(1, -1);
    if (inner.includes("%")) throw new Error("IPv6 zone identifiers are not allowed");
    if (!isIPv6(inner)) throw new Error(`bad IPv6 literal: ${inner}`);
    const c = canonicalIp(inner);
    return { host: c.ip, kind: c.kind };
  }
  let name = raw.toLowerCase();
  if (name.endsWith(".")) name = name.slice(0, -1);
  if (name === "" || name.length > 253) throw new Error("bad host name length");
  const v4 = parseLooseIPv4(name);
  if (v4 !== null) return { host: v4, kind: "ipv4" };
  const labels = name.split(".");
  if (!labels.every((l) => LABEL.test(l))) throw new Error(`bad host name: ${raw}`);
  // A name whose last label is numeric would be read as an IPv4 literal by URL parsers.
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(labels[labels.length - 1])) {
    throw new Error(`host name ends in a number: ${raw}`);
  }
  return { host: name, kind: "name" };
}

export interface Authority {
  host: string;
  kind: HostKind;
  port: number;
}

/** Parses "host:port" (CONNECT) or "host[:port]" (absolute-form, with a default port). */
export function parseAuthority(raw: string, defaultPort?: number): Authority {
  if (raw.includes("@")) throw new Error("userinfo is not allowed in the authority");
  let hostPart = raw, portPart: string | null = null;
  const close = raw.lastIndexOf("]");
  const colon = raw.lastIndexOf(":");
  if (colon > close) {
    hostPart = raw.slice(0, colon);
    portPart = raw.slice(colon + 1);
  }
  let port: number;
  if (portPart === null) {
    if (defaultPort === undefined) throw new Error("port required");
    port = defaultPort;
  } else {
    if (!/^[0-9]{1,5}$/.test(portPart)) throw new Error(`bad port: ${portPart}`);
    port = Number(portPart);
    if (port < 1 || port > 65535) throw new Error(`port out of range: ${portPart}`);
  }
  if (!hostPart.startsWith("[") && hostPart.includes(":")) {
    throw new Error("IPv6 literals must be in brackets");
  }
  const h = parseHost(hostPart);
  return { host: h.host, kind: h.kind, port };
}

/** host:port with brackets around IPv6, as written in a Host header or request target. */
export function formatAuthority(host: string, port: number, defaultPort?: number): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return port === defaultPort ? h : `${h}:${port}`;
}
