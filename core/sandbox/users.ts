// Resolves users and groups from /etc/passwd and /etc/group (by name or number).

export interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export class UnknownPrincipalError extends Error {}

function parseColonFile(text: string): string[][] {
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(":"));
}

export function resolveUser(spec: string | number, passwdText: string): Account {
  const rows = parseColonFile(passwdText);
  const match = typeof spec === "number" || /^\d+$/.test(spec)
    ? rows.find((r) => Number(r[2]) === Number(spec))
    : rows.find((r) => r[0] === spec);
  if (match) {
    return { name: match[0], uid: Number(match[2]), gid: Number(match[3]), home: match[5] ?? "/" };
  }
  if (typeof spec === "number" || /^\d+$/.test(spec)) {
    // A numeric id with no passwd entry is valid: the agent runs with that id and group.
    return { name: String(spec), uid: Number(spec), gid: Number(spec), home: "/" };
  }
  throw new UnknownPrincipalError(`user ${JSON.stringify(spec)} does not exist on this host`);
}

export function resolveGroup(spec: string | number, groupText: string): number {
  if (typeof spec === "number" || /^\d+$/.test(spec)) return Number(spec);
  const match = parseColonFile(groupText).find((r) => r[0] === spec);
  if (!match) {
    throw new UnknownPrincipalError(`group ${JSON.stringify(spec)} does not exist on this host`);
  }
  return Number(match[2]);
}
