// Shared by the PDP tests.

export const CURL = "/usr/bin/curl";

/** A policy whose entries each let curl reach one host on 443 (enforced). */
export function policyYaml(hosts: string[], extra = ""): string {
  const entries = hosts.map((h, i) =>
    `  entry_${i}:
    endpoints:
      - host: "${h}"
        port: 443
        enforcement: enforce
    binaries:
      - path: ${CURL}
`
  ).join("");
  return `version: 1\n${extra}network_policies:\n${entries}`;
}
