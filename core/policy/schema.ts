// The policy format (OpenShell-compatible, `version: 1`), as a zod schema.
// Static sections: filesystem_policy, landlock, process.

import { z } from "zod";
import { networkPolicies } from "./network.ts";
import { privacyPolicy } from "./privacy.ts";
import { credentialsPolicy } from "./credentials.ts";
import { seccompSection } from "./seccomp_section.ts";
import { auditPolicy } from "./audit_section.ts";
import { absolutePath } from "./fields.ts";

export const filesystemPolicy = z.strictObject({
  /** As in OpenShell: true when the section is absent, false when it is present without it. */
  include_workdir: z.boolean().default(false),
  read_only: z.array(absolutePath).default([]),
  read_write: z.array(absolutePath.refine((p) => p.replace(/\/+$/, "") !== "", {
    message: "read_write must not include / (the whole filesystem)",
  })).default([]),
}).refine((f) => f.read_only.length + f.read_write.length <= 256, {
  message: "filesystem_policy lists more than 256 paths (OpenShell's limit)",
});

export const landlockPolicy = z.strictObject({
  compatibility: z.enum(["best_effort", "hard_requirement"]).default("best_effort"),
});

/** A user or group given by name or number. */
const principal = z.union([z.string().min(1), z.number().int().nonnegative()]);

export const processPolicy = z.strictObject({
  run_as_user: principal.optional(),
  run_as_group: principal.optional(),
});

export const policySchema = z.strictObject({
  version: z.literal(1, { message: "version must be 1" }),
  filesystem_policy: filesystemPolicy.default({
    include_workdir: true,
    read_only: [],
    read_write: [],
  }),
  landlock: landlockPolicy.default({ compatibility: "best_effort" }),
  process: processPolicy.default({}),
  network_policies: networkPolicies.default({}),
  network_middlewares: z.unknown().superRefine((v, ctx) => {
    if (v !== undefined) {
      ctx.addIssue({
        code: "custom",
        message: "network_middlewares is not supported yet by clawcage",
      });
    }
  }).optional(),
  privacy: privacyPolicy.optional(),
  credentials: credentialsPolicy.optional(),
  seccomp: seccompSection.optional(),
  audit: auditPolicy.optional(),
});

export type Policy = z.infer<typeof policySchema>;
