import type { SimConfig } from "./config.ts";

/** Wall-clock now in milliseconds, with sub-millisecond precision for microsecond timestamps. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** RFC 3339 in UTC with microseconds, the way Parallel writes them: 2025-04-23T20:21:48.037943Z. */
export function isoFromMs(ms: number): string {
  const whole = Math.floor(ms);
  const micros = Math.min(999, Math.floor((ms - whole) * 1000));
  return new Date(whole).toISOString().replace("Z", `${String(micros).padStart(3, "0")}Z`);
}

export function isoNow(): string {
  return isoFromMs(nowMs());
}

/** A duration of Parallel's time (a run, a retry back-off, an SSE window) in the sim's time. */
export function scaled(ms: number, config: SimConfig): number {
  return ms * config.time_scale;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
