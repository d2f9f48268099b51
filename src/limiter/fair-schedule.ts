// The create limiter's decision, as plain state and arithmetic (the Durable Object in
// create-limiter.ts holds one of these). Two rules:
//
// 1. The rate. A virtual schedule (GCRA, the "generic cell rate algorithm"): `nextFreeMs` is when
//    the next unit of capacity is free; a create may go at `nextFreeMs - burst`, and each unit moves
//    it on by `interval`. In any 60 s the schedule lets at most `burst + 60 s / interval + 1` creates
//    go, and `interval` is chosen so that is under the limit with a second to spare (Parallel's window
//    is a sliding 60 s, sim/rate-limit.ts; the spare second covers a create that leaves a little
//    late). A grant is a slot on that schedule: now, or a moment ahead that the caller waits for.
//
// 2. Fairness. A key may only take a slot a short way ahead, the shorter the more it has used of
//    the last minute: `LIGHT_HOLD_MS` while it has used at most its share with one more key (the
//    limit over the active keys plus one, so a newcomer always counts) and has nothing waiting;
//    `SHARE_HOLD_MS` while it is within its share (the limit over the active keys); `HEAVY_HOLD_MS`
//    over it. A key with a big backlog keeps the schedule filled only half a second ahead, and it
//    takes every slot nobody else wants (nothing is left idle). The front of the schedule is kept
//    for light keys: every other key conforms to a burst shorter by `SHARE_HOLD_MS` and one
//    interval (never below one create: the rate stays the same, only that burst is smaller), so a
//    light key's create finds a slot within one interval however long the backlog is, rather than
//    behind the backlog's hold (from 160 creates a minute; below, the whole burst is that front).
//    Two keys with backlogs converge on halves: the one under its share wins the slots the other
//    would have taken. A
//    create that finds no slot within its hold is refused with a time to come back (`retryInMs`);
//    a key's refusals are spread out at its share of the rate (`deferredUntilMs`), so a backlog does
//    not come back all at once.

/** A slot: go now (`waitMs` 0) or after `waitMs`; the slot is counted and kept for the caller. */
export type Admission =
  | { granted: true; waitMs: number }
  /** No slot now: ask again after `retryInMs` (nothing is kept for the caller). */
  | { granted: false; retryInMs: number };

/** How far ahead a light key (under its share with one more key, nothing waiting) may take a slot. */
export const LIGHT_HOLD_MS = 1_000;
/** How far ahead a key within its share of the last minute may take a slot. */
export const SHARE_HOLD_MS = 750;
/** How far ahead a key over its share may take a slot: a backlog keeps the schedule only this full. */
export const HEAVY_HOLD_MS = 500;
/** The window Parallel counts creates in, plus a second for a create that leaves late. */
const WINDOW_MS = 60_000;
const SPARE_MS = 1_000;

interface KeyState {
  /** Grants of the last window, oldest first: [at, cost]. */
  grants: Array<[number, number]>;
  used: number;
  lastAskMs: number;
  /** The latest retry time handed to this key: the next refusal's retry comes after it. */
  deferredUntilMs: number;
}

export interface ScheduleSnapshot {
  nextFreeMs: number;
  keys: number;
}

export class FairSchedule {
  #nextFreeMs = 0;
  #keys = new Map<string, KeyState>();

  /** Restores the rate's state (the one number that must survive a restart: see create-limiter.ts). */
  constructor(nextFreeMs = 0) {
    this.#nextFreeMs = nextFreeMs;
  }

  get nextFreeMs(): number {
    return this.#nextFreeMs;
  }

  snapshot(): ScheduleSnapshot {
    return { nextFreeMs: this.#nextFreeMs, keys: this.#keys.size };
  }

  acquire(keyId: string, cost: number, limitPerMinute: number, nowMs: number): Admission {
    const { burst, interval } = rateOf(limitPerMinute);
    const key = this.#touch(keyId, nowMs);
    const active = this.#activeKeys(nowMs);
    const hold = holdFor(key, cost, limitPerMinute / active, limitPerMinute / (active + 1), nowMs);
    const tolerance = (burst - 1) * interval;
    // What a key that is not light leaves at the front for light ones (see rule 2).
    const headroom = hold === LIGHT_HOLD_MS ? 0 : Math.min(tolerance, SHARE_HOLD_MS + interval);

    const free = Math.max(this.#nextFreeMs, nowMs);
    // The whole cost must fit in the burst allowance: the last unit is the one that must conform.
    const goAt = Math.max(nowMs, free + (cost - 1) * interval - tolerance + headroom);
    const waitMs = goAt - nowMs;
    if (waitMs <= hold) {
      this.#nextFreeMs = Math.max(goAt, free) + cost * interval;
      key.grants.push([goAt, cost]);
      key.used += cost;
      return { granted: true, waitMs };
    }
    // Come back when a slot would be within reach, and after this key's earlier refusals, spaced
    // at its share of the rate (every active key's share is the same).
    const reachable = goAt - hold;
    const retryAt = Math.max(reachable, key.deferredUntilMs);
    key.deferredUntilMs = retryAt + cost * interval * active;
    return { granted: false, retryInMs: Math.max(1, Math.ceil(retryAt - nowMs)) };
  }

  #touch(keyId: string, nowMs: number): KeyState {
    let key = this.#keys.get(keyId);
    if (!key) {
      key = { grants: [], used: 0, lastAskMs: nowMs, deferredUntilMs: 0 };
      this.#keys.set(keyId, key);
    }
    key.lastAskMs = Math.max(key.lastAskMs, nowMs);
    return key;
  }

  /** Keys that asked within the window; forgets the ones that did not and their old grants. */
  #activeKeys(nowMs: number): number {
    const horizon = nowMs - WINDOW_MS;
    let active = 0;
    for (const [id, key] of this.#keys) {
      while (key.grants.length > 0 && (key.grants[0]?.[0] ?? 0) <= horizon) {
        key.used -= key.grants.shift()?.[1] ?? 0;
      }
      if (key.lastAskMs <= horizon && key.deferredUntilMs <= nowMs) this.#keys.delete(id);
      else active++;
    }
    return active;
  }
}

/** How far ahead the key may take a slot: the more of its share it has used, the less. */
function holdFor(key: KeyState, cost: number, share: number, newcomerShare: number, nowMs: number): number {
  const used = key.used + cost;
  const waiting = key.deferredUntilMs > nowMs;
  if (used <= newcomerShare && !waiting) return LIGHT_HOLD_MS;
  return used <= share ? SHARE_HOLD_MS : HEAVY_HOLD_MS;
}

/**
 * The schedule's burst (creates that may go at once after a quiet spell) and spacing for a limit:
 * `burst + (WINDOW + SPARE) / interval` creates fit in the limit, so any 60 s holds fewer.
 */
export function rateOf(limitPerMinute: number): { burst: number; interval: number } {
  const burst = Math.max(1, Math.floor(limitPerMinute / 40));
  const paced = Math.max(1, limitPerMinute - burst - 1);
  return { burst, interval: (WINDOW_MS + SPARE_MS) / paced };
}
