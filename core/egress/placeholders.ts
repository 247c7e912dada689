// Credential placeholders at the proxy: in headers of an allowed, inspected request, a
// placeholder bound to the request's host is replaced by its secret; a placeholder headed to
// any other host (or sitting in the request line) refuses the request.

import { type LoadedCredential, PLACEHOLDER_PREFIX } from "../policy/credentials.ts";
import type { Header } from "./http_parse.ts";

/** Does `host` match an exact name or a first-label wildcard ("*.example.com")? */
export function hostMatches(pattern: string, host: string): boolean {
  if (!pattern.startsWith("*.")) return pattern === host;
  const suffix = pattern.slice(1);
  return host.endsWith(suffix) && !host.slice(0, -suffix.length).includes(".") &&
    host.length > suffix.length;
}

export type Substitution =
  | { ok: true; headers: Header[]; used: string[] }
  | { ok: false; credential: string; hosts: string[]; where: "header" | "request line" };

export class CredentialStore {
  readonly #byPlaceholder = new Map<string, LoadedCredential>();

  constructor(readonly credentials: LoadedCredential[]) {
    for (const c of credentials) this.#byPlaceholder.set(c.placeholder, c);
  }

  /** Environment the sandbox should get: agent_env name -> placeholder. */
  agentEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const c of this.credentials) if (c.agentEnv) env[c.agentEnv] = c.placeholder;
    return env;
  }

  /** Is some credential bound to `host` (so its requests must be inspected to substitute)? */
  boundTo(host: string): boolean {
    return this.credentials.some((c) => c.hosts.some((p) => hostMatches(p, host)));
  }

  #find(text: string): LoadedCredential[] {
    if (!text.includes(PLACEHOLDER_PREFIX)) return [];
    return this.credentials.filter((c) => text.includes(c.placeholder));
  }

  /** Substitutes placeholders in `headers` for a request to `host` with `requestLine`. */
  substitute(host: string, requestLine: string, headers: Header[]): Substitution {
    if (this.credentials.length === 0) return { ok: true, headers, used: [] };
    const inLine = this.#find(requestLine)[0];
    if (inLine) {
      return { ok: false, credential: inLine.name, hosts: inLine.hosts, where: "request line" };
    }
    const used = new Set<string>();
    const out: Header[] = [];
    for (const [k, v] of headers) {
      let value = v;
      for (const c of this.#find(v)) {
        if (!c.hosts.some((p) => hostMatches(p, host))) {
          return { ok: false, credential: c.name, hosts: c.hosts, where: "header" };
        }
        value = value.split(c.placeholder).join(c.secret);
        used.add(c.name);
      }
      out.push([k, value]);
    }
    return { ok: true, headers: out, used: [...used] };
  }
}
