// Name resolution for the egress proxy. The proxy resolves names itself (the sandbox has no DNS
// of its own) and connects to an address it checked, never to the name again.

import { lookup } from "node:dns/promises";

/** Resolves a host name to all its addresses (IPv4 and IPv6 text). Throws when it cannot. */
export type Resolver = (host: string) => Promise<string[]>;

/** The system resolver (getaddrinfo through node:dns), every address, in the system's order. */
export const systemResolver: Resolver = async (host) => {
  const all = await lookup(host, { all: true, verbatim: true });
  return all.map((a) => a.address);
};
