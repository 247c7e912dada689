// Field types shared by the policy's sections (and the service configuration): absolute paths,
// environment variable names, http(s) URLs. Each section keeps its own wording where it names
// the key the user wrote.

import { z } from "zod";

/** An absolute path without `..` components or NUL, at most 4096 characters. */
export const absolutePath = z.string().superRefine((p, ctx) => {
  if (!p.startsWith("/")) {
    ctx.addIssue({ code: "custom", message: `path must be absolute, got ${JSON.stringify(p)}` });
  } else if (p.split("/").includes("..")) {
    ctx.addIssue({ code: "custom", message: `path must not contain "..": ${JSON.stringify(p)}` });
  } else if (p.length > 4096) {
    ctx.addIssue({ code: "custom", message: "path is longer than 4096 characters" });
  } else if (p.includes("\0")) {
    ctx.addIssue({ code: "custom", message: "path must not contain NUL" });
  }
});

/** The name of an environment variable: letters, digits and '_', not starting with a digit. */
export function envVarName(message = "must be the name of an environment variable") {
  return z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message });
}

/**
 * An http(s) URL without credentials (`what` names the key in messages; `useInstead` says where
 * secrets go), optionally without a query or fragment.
 */
export function httpUrl(what: string, useInstead: string, opts: { noQuery?: boolean } = {}) {
  return z.string().superRefine((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: "custom", message: `not a URL: ${JSON.stringify(s)}` });
      return;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      ctx.addIssue({ code: "custom", message: `${what} must be http:// or https://` });
    } else if (u.username || u.password) {
      ctx.addIssue({
        code: "custom",
        message: `${what} must not carry credentials (use ${useInstead})`,
      });
    } else if (opts.noQuery && (u.search || u.hash)) {
      ctx.addIssue({ code: "custom", message: `${what} must not have a query or fragment` });
    }
  });
}
