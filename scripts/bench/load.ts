// Small load tools for the benchmark: bounded closed-loop request runs, steady-rate pacing, and
// percentiles. Loopback only; every run is bounded in count.

export interface LoadResult {
  requests: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  elapsedMs: number;
  perSecond: number;
}

/** Sends `count` requests made by `make(i)` with `concurrency` in flight; counts 2xx as ok. */
export async function closedLoop(
  count: number,
  concurrency: number,
  make: (i: number) => Promise<Response>,
): Promise<LoadResult> {
  const statuses: Record<string, number> = {};
  let next = 0;
  let ok = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        try {
          const response = await make(i);
          await response.arrayBuffer();
          statuses[response.status] = (statuses[response.status] ?? 0) + 1;
          if (response.ok) ok++;
          else failed++;
        } catch {
          statuses.network = (statuses.network ?? 0) + 1;
          failed++;
        }
      }
    }),
  );
  const elapsedMs = performance.now() - started;
  return { requests: count, ok, failed, statuses, elapsedMs, perSecond: (ok / elapsedMs) * 1000 };
}

/** Calls `task(i)` `count` times at a steady `perSecond`, without waiting for one to finish before the next. */
export async function steadyRate(
  count: number,
  perSecond: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  const started = performance.now();
  const running: Array<Promise<void>> = [];
  for (let i = 0; i < count; i++) {
    const due = started + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    running.push(task(i));
  }
  await Promise.all(running);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  every = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`benchmark: ${what} did not happen within ${timeoutMs / 1000} s`);
    await sleep(every);
  }
}
