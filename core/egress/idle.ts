// An idle deadline that is cheap to push back: a transfer calls touch() for every chunk (a clock
// read), and the one timer, when it fires early, re-arms itself for the time still left. A
// clearTimeout + setTimeout pair per chunk instead cost the proxy about a third of its CPU on
// large downloads (64 KiB chunks, 16 000 timers per GiB).

export class IdleTimer {
  #last = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  readonly #listeners = new Set<() => void>();

  /** Fires the listeners once when nothing touched it for `ms`. */
  constructor(readonly ms: number) {
    this.#arm(ms);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      const left = this.#last + this.ms - performance.now();
      if (left > 0) return this.#arm(left);
      this.#stopped = true;
      for (const l of [...this.#listeners]) l();
      this.#listeners.clear();
    }, ms);
  }

  /** Something moved: the deadline is `ms` from now. */
  touch(): void {
    this.#last = performance.now();
  }

  /** Whether it fired (or was stopped). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Calls `fn` when it fires; returns a function that removes it. */
  onIdle(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Cancels it; listeners are not called. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#listeners.clear();
  }
}
