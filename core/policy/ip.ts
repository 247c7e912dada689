// IP addresses and CIDR ranges for `allowed_ips` and IP-literal hosts: parsing, and the ranges
// no policy may open (loopback, link-local, unspecified, and their IPv4-mapped IPv6 forms).

import { isIPv4, isIPv6 } from "node:net";

export interface Cidr {
  version: 4 | 6;
  /** The address as a number (128 bits for IPv6), host bits cleared. */
  base: bigint;
  bits: number;
}

function parseV4(s: string): bigint {
  return s.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function parseV6(s: string): bigint {
  let text = s;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    // An embedded IPv4 address (::ffff:1.2.3.4) becomes two hex groups.
    const v4 = parseV4(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${
      (v4 & 0xffffn).toString(16)
    }`;
  }
  const groups = (p: string) => (p === "" ? [] : p.split(":")).map((g) => parseInt(g, 16));
  const double = text.indexOf("::");
  const left = groups(double < 0 ? text : text.slice(0, double));
  const right = double < 0 ? [] : groups(text.slice(double + 2));
  const all = [...left, ...Array(8 - left.length - right.length).fill(0), ...right];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** Parses "10.0.0.0/8", "10.1.2.3", "fd00::/8" or "::1"; null when it is neither. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const version = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : null;
  if (version === null) return null;
  const width = version === 4 ? 32 : 128;
  let bits = width;
  if (slash >= 0) {
    const b = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b) || Number(b) > width) return null;
    bits = Number(b);
  }
  const value = version === 4 ? parseV4(addr) : parseV6(addr);
  const mask = ((1n << BigInt(width)) - 1n) ^ ((1n << BigInt(width - bits)) - 1n);
  return { version, base: value & mask, bits };
}

/** True when the two ranges share at least one address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.version !== b.version) return false;
  const width = a.version === 4 ? 32 : 128;
  const bits = Math.min(a.bits, b.bits);
  const shift = BigInt(width - bits);
  return (a.base >> shift) === (b.base >> shift);
}

const BLOCKED: [string, string][] = [
  ["0.0.0.0/8", "unspecified"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local (includes the cloud metadata address 169.254.169.254)"],
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["fe80::/10", "link-local"],
  ["::ffff:0.0.0.0/104", "unspecified (IPv4-mapped)"],
  ["::ffff:127.0.0.0/104", "loopback (IPv4-mapped)"],
  ["::ffff:169.254.0.0/112", "link-local (IPv4-mapped)"],
];
const BLOCKED_RANGES = BLOCKED.map(([c, why]) => ({ cidr: parseCidr(c)!, text: c, why }));

/** Why a range may not be opened by a policy ("loopback (127.0.0.0/8)"), or null. */
export function blockedRange(c: Cidr): string | null {
  for (const b of BLOCKED_RANGES) {
    if (overlaps(c, b.cidr)) return `${b.why}, ${b.text}`;
  }
  return null;
}
