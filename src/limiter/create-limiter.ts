// The create limiter: one Durable Object instance holds the one counter every create of taskrelay
// asks (single runs, their resubmissions, schedule occurrences, batch chunks), so the limit is one
// consistent count, not an estimate per isolate. The decision is fair-schedule.ts's.
//
// State. The fairness figures (each key's grants of the last minute) live in memory only: losing
// them (the object restarted) makes a heavy key look light for at most a minute, which can delay
// a light key by up to LIGHT_HOLD_MS, never break the limit. The rate's one number, `nextFreeMs`, is
// what keeps the limit across a restart, so it is written to the object's storage, at most once a
// second; a restarted object that finds a recent value adds the second it may not have written (as
// if that second had been used in full), so it never lets more through than the limit. An object
// left idle for a minute has nothing to remember: its window has passed.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { type Admission, FairSchedule, rateOf } from "./fair-schedule";

const STATE_KEY = "next_free_ms";
const WRITE_EVERY_MS = 1_000;
const WINDOW_MS = 61_000;

export class CreateLimiter extends DurableObject<Env> {
  #schedule: FairSchedule;
  #writtenAtMs = 0;
  #writtenFreeMs = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const saved = ctx.storage.kv.get<{ nextFreeMs: number; writtenAtMs: number }>(STATE_KEY);
    const now = Date.now();
    const recent = saved && now - saved.writtenAtMs < WINDOW_MS;
    // A recent value may be up to a second behind what was granted: count that second as used.
    this.#schedule = new FairSchedule(recent ? Math.max(saved.nextFreeMs, now) + WRITE_EVERY_MS : 0);
  }

  /**
   * One create of `cost` Parallel create calls for `keyId`, under `limitPerMinute`: a slot now or
   * shortly (the caller waits `waitMs`, then creates), or a time to ask again. `nowMs` is for tests
   * (a fake clock); callers in the Worker leave it to the object's clock, the only one that counts.
   */
  acquire(keyId: string, cost: number, limitPerMinute: number, nowMs: number = Date.now()): Admission {
    const admission = this.#schedule.acquire(keyId, cost, limitPerMinute, nowMs);
    if (admission.granted) this.#persist(nowMs, limitPerMinute);
    return admission;
  }

  #persist(nowMs: number, limitPerMinute: number) {
    const nextFreeMs = this.#schedule.nextFreeMs;
    // Written once a second, or sooner when the schedule ran half a second ahead of what is written,
    // so the unwritten part is always under the second a restart adds.
    const ranAhead = nextFreeMs - this.#writtenFreeMs + rateOf(limitPerMinute).interval > WRITE_EVERY_MS / 2;
    if (nowMs - this.#writtenAtMs < WRITE_EVERY_MS && !ranAhead) return;
    this.ctx.storage.kv.put(STATE_KEY, { nextFreeMs, writtenAtMs: nowMs });
    this.#writtenAtMs = nowMs;
    this.#writtenFreeMs = nextFreeMs;
  }
}
