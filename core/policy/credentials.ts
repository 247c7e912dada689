// The policy's `credentials` section: named secrets for upstream APIs, held by the supervisor
// (read from its environment or from a file only its user can read) and bound to hosts. The
// agent sees a placeholder string instead of the secret; the egress proxy swaps the placeholder
// for the secret in headers of allowed, inspected requests to a bound host, and refuses a
// placeholder headed anywhere else.
//
//   credentials:
//     github:
//       env: GITHUB_TOKEN            # or file: /etc/clawcage/github.token (mode 0600)
//       hosts: [api.github.com]      # exact names or first-label wildcards (*.github.com)
//       agent_env: GITHUB_TOKEN      # optional: the sandbox gets the placeholder in this variable

import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { z } from "zod";
import { envVarName } from "./fields.ts";

const envName = envVarName();

const credentialName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, {
  message: "credential names are lower-case letters, digits, '_' and '-' (at most 63)",
});

/** An exact host name or a first-label wildcard ("*.example.com"). */
export const hostPattern = z.string().transform((s) => s.toLowerCase()).refine(
  (s) => /^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/.test(s),
  { message: 'hosts are names like "api.example.com" or "*.example.com"' },
);

export const credential = z.strictObject({
  env: envName.optional(),
  file: z.string().refine((p) => p.startsWith("/") && !p.split("/").includes(".."), {
    message: "file must be an absolute path without ..",
  }).optional(),
  hosts: z.array(hostPattern).min(1, {
    message: "a credential must be bound to at least one host",
  }),
  agent_env: envName.optional(),
}).superRefine((c, ctx) => {
  if ((c.env === undefined) === (c.file === undefined)) {
    ctx.addIssue({ code: "custom", message: "a credential needs exactly one of env or file" });
  }
});

export const credentialsPolicy = z.record(credentialName, credential);

export type CredentialsPolicy = z.infer<typeof credentialsPolicy>;

/** A credential the supervisor loaded: the secret, where it may go, what the agent sees. */
export interface LoadedCredential {
  name: string;
  secret: string;
  hosts: string[];
  placeholder: string;
  agentEnv?: string;
}

/** All placeholders start with this, so the proxy can find them cheaply. */
export const PLACEHOLDER_PREFIX = "clawcage-placeholder-";

/** A user-caused problem loading a credential (one line). */
export class CredentialError extends Error {}

function readSecretFile(name: string, path: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    throw new CredentialError(
      `credentials.${name}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`,
    );
  }
  if (!st.isFile()) throw new CredentialError(`credentials.${name}: ${path} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new CredentialError(
      `credentials.${name}: ${path} has mode ${(st.mode & 0o777).toString(8)}; ` +
        `it must be readable by its owner only (chmod 600 ${path})`,
    );
  }
  return fs.readFileSync(path, "utf8").replace(/\r?\n$/, "");
}

/**
 * Reads every credential's secret (from `env` or the file) and makes its placeholder.
 * Throws CredentialError naming the credential when a secret is missing or unsafe.
 */
export function loadCredentials(
  section: CredentialsPolicy | undefined,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): LoadedCredential[] {
  const out: LoadedCredential[] = [];
  for (const [name, c] of Object.entries(section ?? {})) {
    let secret: string;
    if (c.env !== undefined) {
      const v = env(c.env);
      if (v === undefined || v === "") {
        throw new CredentialError(`credentials.${name}: environment variable ${c.env} is not set`);
      }
      secret = v;
    } else {
      secret = readSecretFile(name, c.file!);
    }
    if (secret === "") throw new CredentialError(`credentials.${name}: the secret is empty`);
    if (!/^[\x20-\x7e]+$/.test(secret)) {
      throw new CredentialError(
        `credentials.${name}: the secret must be printable ASCII (it goes into HTTP headers)`,
      );
    }
    out.push({
      name,
      secret,
      hosts: c.hosts,
      placeholder: `${PLACEHOLDER_PREFIX}${name}-${randomBytes(12).toString("hex")}`,
      ...(c.agent_env ? { agentEnv: c.agent_env } : {}),
    });
  }
  return out;
}
