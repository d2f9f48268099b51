// The create rate limit (§9: 2,000 per minute by default): a sliding 60-second window over
// accepted create requests. Parallel's key is the API key; the sim has one key, so one window.

const WINDOW_MS = 60_000;

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export class SlidingWindowLimiter {
  #stamps: number[] = [];
  #head = 0;

  /** Counts a request at `nowMs` if it fits under `limit` per minute. */
  take(nowMs: number, limit: number): RateDecision {
    const horizon = nowMs - WINDOW_MS;
    while (this.#head < this.#stamps.length && (this.#stamps[this.#head] ?? 0) <= horizon) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#stamps.length) {
      this.#stamps = this.#stamps.slice(this.#head);
      this.#head = 0;
    }
    const inWindow = this.#stamps.length - this.#head;
    if (inWindow >= limit) {
      // The window frees a slot when the request `inWindow - limit` places from its start ages out.
      const freeing = this.#stamps[this.#head + inWindow - limit] ?? nowMs;
      return {
        allowed: false,
        retryAfterSeconds: Math.max(1, Math.ceil((freeing + WINDOW_MS - nowMs) / 1000)),
      };
    }
    this.#stamps.push(nowMs);
    return { allowed: true };
  }

  reset(): void {
    this.#stamps = [];
    this.#head = 0;
  }
}
