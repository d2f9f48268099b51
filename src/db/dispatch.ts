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
