// Which backend answers a request, and why. Pure: the same inputs give the same decision.

import type { PrivacyPolicy } from "../core/policy/privacy.ts";
import type { EntityType } from "./pii/types.ts";

export type Role = "local" | "cloud";

export interface RouteInput {
  /** Findings at or above min_score, by type. */
  counts: Partial<Record<EntityType, number>>;
  /** What the detector could not read (images, token ids, ...). */
  unscannable: readonly string[];
  /** The model the client asked for. */
  model: string;
}

export type Route =
  | {
    ok: true;
    role: Role;
    backend: string;
    reason: string;
    /** The request may never reach the cloud as it is (fail-closed applies). */
    mustStayLocal: boolean;
    /** keep_local types that forced the local backend (for a fail_closed: false fallback). */
    keepLocalTypes: EntityType[];
  }
  | { ok: false; status: 400 | 404; code: string; message: string };

/** The model names clients may use: "auto", and every backend's name and models. */
export function knownModels(policy: PrivacyPolicy): string[] {
  const names = new Set(["auto"]);
  for (const [name, b] of Object.entries(policy.backends)) {
    names.add(name);
    if (b.model) names.add(b.model);
    if (b.embedding_model) names.add(b.embedding_model);
  }
  return [...names];
}

function isLocalModel(policy: PrivacyPolicy, model: string): boolean {
  if (policy.local === undefined) return false;
  const b = policy.backends[policy.local];
  return model === policy.local || model === b.model || model === b.embedding_model;
}

export function decideRoute(policy: PrivacyPolicy, input: RouteInput): Route {
  if (!knownModels(policy).includes(input.model)) {
    return {
      ok: false,
      status: 404,
      code: "model_not_found",
      message: `unknown model ${JSON.stringify(input.model)}; this router serves: ${
        knownModels(policy).join(", ")
      }`,
    };
  }
  const local = policy.local;
  const keepLocalTypes = policy.keep_local.filter((t) => (input.counts[t] ?? 0) > 0);
  if (keepLocalTypes.length > 0) {
    return {
      ok: true,
      role: "local",
      backend: local!,
      reason: `keep_local: ${keepLocalTypes.join(", ")}`,
      mustStayLocal: true,
      keepLocalTypes,
    };
  }
  if (input.unscannable.length > 0 && policy.cloud !== undefined) {
    const what = input.unscannable.join(", ");
    if (local === undefined) {
      return {
        ok: false,
        status: 400,
        code: "unscannable_content",
        message:
          `the request has content the PII detector cannot read (${what}) and no local backend is configured; it was not sent to the cloud`,
      };
    }
    return {
      ok: true,
      role: "local",
      backend: local,
      reason: `unscannable content: ${what}`,
      mustStayLocal: true,
      keepLocalTypes: [],
    };
  }
  if (isLocalModel(policy, input.model)) {
    return {
      ok: true,
      role: "local",
      backend: local!,
      reason: "the client asked for the local model",
      mustStayLocal: true,
      keepLocalTypes: [],
    };
  }
  if (policy.cloud !== undefined) {
    return {
      ok: true,
      role: "cloud",
      backend: policy.cloud,
      reason: "no keep_local entities",
      mustStayLocal: false,
      keepLocalTypes: [],
    };
  }
  return {
    ok: true,
    role: "local",
    backend: local!,
    reason: "no cloud backend configured",
    mustStayLocal: true,
    keepLocalTypes: [],
  };
}
