// What the cron tick's claim and the consumer's take write about a row handed to the queue
// (migration 0021). The claim sets the row's lease and the same value in `dispatch_lease`; the take
// clears `dispatch_lease`. So `lease_until = dispatch_lease` says that no consumer has taken the row
// since the tick sent it, whichever of its messages turns up first may take it; and a row claimed
// again while that holds (its lease ran out before any of its messages arrived) was handed out and
// not taken: the queue is behind, or the message was lost. Each such hand-out in a row doubles the
// lease (up to 2^MAX_DISPATCH_DOUBLINGS), so a backlog that outlives the lease costs a few messages
// a row instead of one a tick, and a lost message still makes its row due again.

/** The most a dispatch lease doubles: 8 × the first (40 min deployed, 4 min at TIME_SCALE 0.1). */
export const MAX_DISPATCH_DOUBLINGS = 3;

/**
 * The SET clauses of a claim: `dispatches`, the lease and `dispatch_lease`. `lease` and `now` are the
 * statement's parameters (e.g. "?1") holding the first hand-out's lease and the claim's time; the lease
 * given is now + (lease − now) × 2^dispatches. SQLite evaluates every SET expression on the row as it
 * was, so `dispatches` here is the count before this claim.
 */
export function dispatchClaimSet(params: { lease: string; now: string }): string {
  const again = "lease_until IS NOT NULL AND lease_until = dispatch_lease";
  const doublings = `CASE WHEN ${again} THEN MIN(dispatches + 1, ${MAX_DISPATCH_DOUBLINGS}) ELSE 0 END`;
  // In seconds since 1970 with their milliseconds ('subsec'), exact to the millisecond; strftime
  // writes toISOString's format.
  const [now, lease] = [`unixepoch(${params.now}, 'subsec')`, `unixepoch(${params.lease}, 'subsec')`];
  const until = `strftime('%Y-%m-%dT%H:%M:%fZ', ${now} + (${lease} - ${now}) * (1 << (${doublings})), 'unixepoch')`;
  return `dispatches = CASE WHEN ${again} THEN dispatches + 1 ELSE 0 END, lease_until = ${until}, dispatch_lease = ${until}`;
}

/** The take's part: the row is free for any of its messages while its lease is still the tick's. */
export const DISPATCHED = "lease_until = dispatch_lease";

/** The take's SET clause: the lease is a consumer's from now on. */
export const TAKEN_SET = "dispatch_lease = NULL";

/** A row its holder gives back (cron/work.ts release): its id and the lease it was claimed or taken with. */
export interface HeldRow {
  id: string;
  lease: string;
}

/**
 * The one statement that gives rows back, due again at ?2 (a failed message's retry time, or at once
 * for rows whose sendBatch failed). ?1: the rows as JSON [{id, lease}, …], one bound parameter for a
 * page of 100. ?3: the latest lease a take at the time of the release gives.
 *
 * A row is given back only while it is still held under the lease named, or under a later one up to
 * ?3 that is no tick's: a renewal by the holder's own work (a poll that recorded its run completed
 * claimed the result fetch, with a new lease). Its lease then ends at ?2 and, where the table has the
 * dispatch columns, is also its dispatch lease (with `dispatches` from 0: the row was taken), so any of
 * its messages may take it (DISPATCHED) and a tick that claims it after ?2 counts one hand-out not
 * taken. `due`: the row's due column, brought forward to ?2 when later (a run's or a batch's sweep
 * time; not a delivery's attempt time or a schedule's occurrence, which are their own schedule).
 */
export interface ReleaseSpec {
  table: "runs" | "deliveries" | "schedules" | "batches";
  /** The lease column, when not `lease_until` (a batch's results pass). */
  lease?: string;
  due?: string;
  /** Whether the table has `dispatch_lease` and `dispatches` (runs, deliveries, schedules). */
  dispatch: boolean;
}

export function releaseSql(spec: ReleaseSpec): string {
  const lease = spec.lease ?? "lease_until";
  const held = "json_extract(held.value, '$.lease')";
  const set = [
    `${lease} = ?2`,
    ...(spec.dispatch ? ["dispatch_lease = ?2", "dispatches = 0"] : []),
    ...(spec.due ? [`${spec.due} = MIN(${spec.due}, ?2)`] : []),
  ].join(", ");
  const renewed = `${lease} > ${held} AND ${lease} <= ?3${spec.dispatch ? " AND dispatch_lease IS NULL" : ""}`;
  return `UPDATE ${spec.table} SET ${set}
    FROM json_each(?1) AS held
    WHERE ${spec.table}.id = json_extract(held.value, '$.id')
      AND (${lease} = ${held} OR (${renewed}))`;
}

/** Runs releaseSql for `held`, due again at `at`; `latest` as its ?3. How many rows were given back. */
export async function releaseHeld(
  db: D1Database,
  spec: ReleaseSpec,
  held: readonly HeldRow[],
  at: string,
  latest: string,
): Promise<number> {
  if (held.length === 0) return 0;
  const result = await db.prepare(releaseSql(spec)).bind(JSON.stringify(held), at, latest).run();
  return result.meta.changes ?? 0;
}
