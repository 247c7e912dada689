// A minimal server-sent-events reader and writer (the subset model APIs use).

export interface SseEvent {
  /** The event's lines as received, without the blank line that ended it. */
  raw: string;
  event: string | null;
  /** The data lines joined by "\n", or null when there were none. */
  data: string | null;
}

/** Splits a stream of text into events; feed it pieces, then call end(). */
export class SseReader {
  #buffer = "";

  push(text: string): SseEvent[] {
    this.#buffer += text;
    const events: SseEvent[] = [];
    for (;;) {
      const m = /\r\n\r\n|\n\n|\r\r/.exec(this.#buffer);
      if (!m) break;
      const block = this.#buffer.slice(0, m.index);
      this.#buffer = this.#buffer.slice(m.index + m[0].length);
      if (block.length > 0) events.push(parseBlock(block));
    }
    return events;
  }

  /** The last event, if the stream ended without a blank line after it. */
  end(): SseEvent[] {
    const rest = this.#buffer;
    this.#buffer = "";
    return rest.trim().length > 0 ? [parseBlock(rest)] : [];
  }
}

function parseBlock(block: string): SseEvent {
  let event: string | null = null;
  const data: string[] = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line.startsWith("data:")) data.push(stripSpace(line.slice(5)));
    else if (line.startsWith("event:")) event = stripSpace(line.slice(6));
  }
  return { raw: block, event, data: data.length ? data.join("\n") : null };
}

function stripSpace(s: string): string {
  return s.startsWith(" ") ? s.slice(1) : s;
}

/** Serialises an event; `data` may be a string or a value written as JSON. */
export function formatSse(event: string | null, data: unknown): string {
  const text = typeof data === "string" ? data : JSON.stringify(data);
  const lines = text.split("\n").map((l) => `data: ${l}`).join("\n");
  return (event ? `event: ${event}\n` : "") + lines + "\n\n";
}
