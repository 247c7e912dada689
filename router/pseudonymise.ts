// Pseudonymisation: identifiers are replaced by placeholders such as <PERSON_1> before a cloud
// call and put back in the answer. The mapping lives in one Pseudonymiser per request, inside the
// router; it is never sent anywhere and never shared between requests.
//
// Numbering follows the order of first appearance over the whole request, so the same person is
// <PERSON_1> in every message of a conversation, and an agent that resends the history gets the
// same placeholders again on the next turn.

import type { Entity, EntityType } from "./pii/types.ts";

const PLAIN = /<([A-Z][A-Z0-9_]*_[0-9]+)>/g;
/** Inside JSON text a model may also write < and > as \u003c and \u003e. */
const JSONISH = /(?:<|\\u003[cC])([A-Z][A-Z0-9_]*_[0-9]+)(?:>|\\u003[eE])/g;
/** Longest placeholder body the streaming restorer waits for. */
const MAX_BODY = 48;

export class Pseudonymiser {
  readonly #byValue = new Map<string, string>();
  readonly #byBody = new Map<string, string>();
  readonly #next = new Map<string, number>();
  readonly #taken = new Set<string>();
  /** Occurrences replaced, by type. */
  readonly counts: Partial<Record<EntityType, number>> = {};

  /** How many distinct values have a placeholder. */
  get size(): number {
    return this.#byValue.size;
  }

  /**
   * Marks placeholder-like tokens already present in the client's text as taken, so that a
   * literal "<PERSON_1>" the client wrote is never confused with one the router assigned.
   */
  reserve(text: string): void {
    for (const m of text.matchAll(PLAIN)) this.#taken.add(m[1]);
  }

  /** Replaces the given entities (non-overlapping, any order) in `text` by placeholders. */
  replace(text: string, entities: readonly Entity[]): string {
    if (entities.length === 0) return text;
    const sorted = [...entities].sort((a, b) => a.start - b.start);
    let out = "";
    let at = 0;
    for (const e of sorted) {
      if (e.start < at || e.end <= e.start || e.end > text.length) continue;
      out += text.slice(at, e.start) + "<" + this.#placeholder(e.type, text.slice(e.start, e.end)) +
        ">";
      at = e.end;
      this.counts[e.type] = (this.counts[e.type] ?? 0) + 1;
    }
    return out + text.slice(at);
  }

  #placeholder(type: EntityType, value: string): string {
    const known = this.#byValue.get(value);
    if (known !== undefined) return known;
    let n = this.#next.get(type) ?? 1;
    let body = `${type}_${n}`;
    while (this.#taken.has(body)) body = `${type}_${++n}`;
    this.#next.set(type, n + 1);
    this.#byValue.set(value, body);
    this.#byBody.set(body, value);
    return body;
  }

  /** Puts the real values back into plain text. Unknown placeholders are left as they are. */
  restore(text: string): string {
    if (this.#byBody.size === 0 || !text.includes("<")) return text;
    return text.replace(PLAIN, (m, body: string) => this.#byBody.get(body) ?? m);
  }

  /** Puts the real values back into JSON text (tool-call arguments), escaped for JSON strings. */
  restoreJson(text: string): string {
    if (this.#byBody.size === 0) return text;
    return text.replace(JSONISH, (m, body: string) => {
      const value = this.#byBody.get(body);
      return value === undefined ? m : JSON.stringify(value).slice(1, -1);
    });
  }

  /**
   * Restores every string inside a parsed JSON value (object keys are left alone). Strings under
   * an `arguments` key are JSON text (OpenAI tool calls) and are restored as such.
   */
  restoreDeep(value: unknown, json = false): unknown {
    if (this.#byBody.size === 0) return value;
    if (typeof value === "string") return json ? this.restoreJson(value) : this.restore(value);
    if (Array.isArray(value)) return value.map((v) => this.restoreDeep(v));
    if (value !== null && typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.restoreDeep(v, k === "arguments");
      return out;
    }
    return value;
  }

  /** A restorer for one streamed text field; `json` when the field carries JSON text. */
  streamRestorer(json: boolean): StreamRestorer {
    return new StreamRestorer(this, json);
  }
}

/**
 * Restores a text that arrives in pieces. A piece that ends in what may be the start of a
 * placeholder ("<PERS") is held back until the next piece shows whether it is one.
 */
export class StreamRestorer {
  #pending = "";
  constructor(readonly ps: Pseudonymiser, readonly json: boolean) {}

  get pending(): string {
    return this.#pending;
  }

  push(piece: string): string {
    const text = this.#pending + piece;
    const cut = holdFrom(text, this.json);
    this.#pending = text.slice(cut);
    const ready = text.slice(0, cut);
    return this.json ? this.ps.restoreJson(ready) : this.ps.restore(ready);
  }

  /** Whatever is still held back, restored (called when the field ends). */
  flush(): string {
    const rest = this.#pending;
    this.#pending = "";
    return this.json ? this.ps.restoreJson(rest) : this.ps.restore(rest);
  }
}

const OPEN_PLAIN = ["<"];
const OPEN_JSON = ["<", "\\u003c", "\\u003C"];
const CLOSE_JSON = ["\\u003e", "\\u003E"];

/** Index from which `text` must be held back: the leftmost start of an unfinished placeholder. */
function holdFrom(text: string, json: boolean): number {
  const from = Math.max(0, text.length - (MAX_BODY + 12));
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x3c /* < */ && !(json && c === 0x5c /* \ */)) continue;
    if (isUnfinished(text.slice(i), json)) return i;
  }
  return text.length;
}

function isUnfinished(tail: string, json: boolean): boolean {
  for (const open of json ? OPEN_JSON : OPEN_PLAIN) {
    if (tail.length < open.length) {
      if (open.startsWith(tail)) return true;
      continue;
    }
    if (!tail.startsWith(open)) continue;
    let rest = tail.slice(open.length);
    const body = /^[A-Z0-9_]*/.exec(rest)![0];
    if (body.length > MAX_BODY) return false;
    if (body.length > 0 && !/^[A-Z]/.test(body)) return false;
    rest = rest.slice(body.length);
    if (rest === "") return true;
    if (json && body.length > 0) {
      for (const close of CLOSE_JSON) {
        if (rest.length < close.length && close.startsWith(rest)) return true;
      }
    }
  }
  return false;
}
