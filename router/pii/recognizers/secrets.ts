// Secrets: API keys by their issuers' prefixes, PEM private keys, JWTs, and high-entropy
// tokens assigned to key/secret/token/password names.

import type { Entity } from "../types.ts";
import { entropy } from "../validators.ts";
import { type Recognizer, scan } from "./common.ts";

const PREFIXED = new RegExp(
  [
    String.raw`sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,}`,
    String.raw`sk-(?=[A-Za-z_-]*\d)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}`,
    String.raw`gh[pousr]_[A-Za-z0-9]{36,}`,
    String.raw`github_pat_[A-Za-z0-9_]{60,}`,
    String.raw`xox[abposr]-[A-Za-z0-9-]{10,}`,
    String.raw`(?:AKIA|ASIA)[0-9A-Z]{16}`,
    String.raw`AIza[0-9A-Za-z_-]{35}`,
    String.raw`hf_[A-Za-z0-9]{30,}`,
    String.raw`nvapi-[A-Za-z0-9_-]{40,}`,
    String.raw`glpat-[A-Za-z0-9_-]{20,}`,
  ].map((p) => `(?<![A-Za-z0-9_-])${p}(?![A-Za-z0-9_-])`).join("|"),
  "g",
);
const JWT = /(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{10,}/g;
const PEM =
  /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----/g;
const ASSIGNED =
  /(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|auth|credential|private[_-]?key|access[_-]?key)[A-Za-z_-]*["']?\s*(?:[:=]|\s)\s*(?:bearer\s+)?["']?([A-Za-z0-9+/_=.-]{20,})/gi;

export const secrets: Recognizer = {
  types: ["SECRET"],
  find(text) {
    const out: Entity[] = [];
    scan(text, PREFIXED, (m) => {
      out.push({ type: "SECRET", start: m.index, end: m.index + m[0].length, score: 0.99 });
    });
    scan(text, JWT, (m) => {
      out.push({ type: "SECRET", start: m.index, end: m.index + m[0].length, score: 0.95 });
    });
    scan(text, PEM, (m) => {
      out.push({ type: "SECRET", start: m.index, end: m.index + m[0].length, score: 1 });
    });
    scan(text, ASSIGNED, (m) => {
      const value = m[1].replace(/[.=]+$/, "");
      const mixed = /\d/.test(value) && /[A-Za-z]/.test(value);
      if (!mixed || entropy(value) < 3.5) return;
      const start = m.index + m[0].length - m[1].length;
      out.push({ type: "SECRET", start, end: start + value.length, score: 0.85 });
    });
    return out;
  },
};
