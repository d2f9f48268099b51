// Callback delivery: once a run is finished, its result is POSTed to the run's callback URL, signed
// with the key's Standard Webhooks secret, until the receiver answers 2xx. At least once: the first
// attempt and the retries due within seconds run in this invocation (after the response, through
// waitUntil); later ones are the sweeper's (cron/jobs/retry-deliveries.ts). Inside a queue message
// even the first retry is a delayed message, so a refusing receiver never holds the consumer's batch.
// Every attempt is recorded.

import { RETRY_MESSAGE } from "../cron/costs";
import {
  type AttemptOutcome,
  claimDelivery,
  claimDeliveryNow,
  type Delivery,
  type DeliveryAttempt,
  type DeliveryRunEvent,
  type DeliveryRunEventName,
  type DeliveryStatus,
  findOwnedDelivery,
  insertDelivery,
  listAttempts,
  listDeliveries,
  listRunDeliveries,
  recordAttempt,
  restartDelivery,
} from "../db/deliveries";
import type { SigningSecrets } from "../db/keys";
import { findRun, isTerminal, type Run } from "../db/runs";
import { type Config, requireSetting } from "../env";
import { ApiError } from "../errors";
import { newId } from "../ids";
import { describeError } from "../log";
import { batchCallbackBody } from "./batch-callback";
import { callbackUrlProblem } from "./callback-url";
import type { ServiceContext } from "./context";
import { nextDeliveryAttemptAt } from "./delivery-schedule";
import { CALLBACK_USER_AGENT, postCallback, type SendResult } from "./delivery-send";
import { signatureHeader } from "./delivery-signing";
import { beforeIdOf, decodeSequenceCursor, type PageRequest, toPage, toSequencePage } from "./pages";
import { toRunView } from "./run-view";
import { getOwnedRun } from "./runs";
import {
  addMs,
  DELIVERY_LEASE_MS,
  DELIVERY_TIMEOUT_MS,
  INLINE_RETRY_MAX_WAIT_MS,
  MAX_DELIVERY_ATTEMPTS,
  MAX_MESSAGE_DELAY_MS,
} from "./timing";

/** What a delivery needs besides the clock: replaceable in tests so they neither sleep nor wait 15 s. */
export interface DeliveryRuntime {
  sleep: (ms: number) => Promise<void>;
  timeoutMs: number;
  random: () => number;
}

export const DEFAULT_DELIVERY_RUNTIME: DeliveryRuntime = {
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  timeoutMs: DELIVERY_TIMEOUT_MS,
  random: Math.random,
};

export function deliveryEventFor(run: Pick<Run, "status">): DeliveryRunEventName {
  return run.status === "completed" ? "run.completed" : "run.failed";
}

/** A finished run's delivery as created (born claimed: this invocation sends the first attempt), and its timeline event. */
export function newRunDelivery(
  run: Pick<Run, "id" | "api_key_id" | "status"> & { callback_url: string },
  now: Date,
): { delivery: Delivery; event: DeliveryRunEvent } {
  const at = now.toISOString();
  const id = newId("dlv", now);
  const event = deliveryEventFor(run);
  return {
    delivery: {
      id,
      run_id: run.id,
      api_key_id: run.api_key_id,
      event,
      url: run.callback_url,
      status: "pending",
      series: 1,
      attempt_count: 0,
      next_attempt_at: at,
      // Born claimed: this invocation sends the first attempt; the sweeper only after the lease.
      lease_until: addMs(now, DELIVERY_LEASE_MS).toISOString(),
      last_attempt_at: null,
      last_status_code: null,
      last_error: null,
      created_at: at,
      updated_at: at,
    },
    event: { kind: "delivery_created", detail: { delivery_id: id, event, url: run.callback_url } },
  };
}

/**
 * The hook's work: a finished run with a callback URL gets its delivery (once per run and event),
 * and the first attempts are sent after the response. Returns the delivery when this call created it.
 */
export async function startRunDelivery(
  ctx: ServiceContext,
  run: Run,
  runtime: DeliveryRuntime = DEFAULT_DELIVERY_RUNTIME,
  /** The run as finished: its finishing is marked done in the delivery's batch (see onRunFinished). */
  finishing?: Pick<Run, "status">,
): Promise<Delivery | null> {
  if (!run.callback_url || !isTerminal(run.status)) return null;
  const created = newRunDelivery({ ...run, callback_url: run.callback_url }, ctx.now());
  const delivery = await insertDelivery(ctx.db, created.delivery, created.event, finishing);
  // Not created: the run already has this delivery, and whoever created it is sending it.
  if (!delivery) return null;
  sendNewDelivery(ctx, delivery, runtime, run);
  return delivery;
}

/**
 * Sends a delivery created born claimed elsewhere (a batch's batch.completed, a run's created with
 * its result) after the response; `run`, when known, saves reading it again.
 */
export function sendNewDelivery(
  ctx: ServiceContext,
  delivery: Delivery,
  runtime: DeliveryRuntime = DEFAULT_DELIVERY_RUNTIME,
  run?: Run,
): void {
  ctx.waitUntil(sendClaimedDelivery(ctx, delivery, runtime, run));
}

/**
 * Sends a delivery's due attempts in this invocation: the next one, then each retry due within
 * INLINE_RETRY_MAX_WAIT_MS, holding the lease across the wait so the sweeper leaves it alone.
 * A later retry is left to the sweeper. Inside a queue message no retry is waited for: a retry due
 * within Queues' delay keeps the lease and is a delayed message (ctx.retryDeliveryLater).
 * Never throws: it runs inside waitUntil.
 */
export async function sendDelivery(
  ctx: ServiceContext,
  deliveryId: string,
  runtime: DeliveryRuntime = DEFAULT_DELIVERY_RUNTIME,
): Promise<Delivery | null> {
  const claimed = await claimDelivery(ctx.db, deliveryId, ...leaseFrom(ctx.now())).catch((error: unknown) => {
    ctx.log.error("delivery.send_failed", { delivery_id: deliveryId, error: describeError(error) });
    return null;
  });
  return claimed ? sendClaimedDelivery(ctx, claimed, runtime) : null;
}

/** As sendDelivery, for a delivery this invocation already holds the lease on (and its run, if known). */
async function sendClaimedDelivery(
  ctx: ServiceContext,
  delivery: Delivery,
  runtime: DeliveryRuntime,
  run?: Run,
): Promise<Delivery | null> {
  const retryLater = ctx.retryDeliveryLater;
  // The same backoff either way: a delayed message is due when the wait would have ended.
  const holdUpToMs = retryLater ? MAX_MESSAGE_DELAY_MS : INLINE_RETRY_MAX_WAIT_MS;
  try {
    let claimed: Delivery | null = delivery;
    let latest: Delivery | null = claimed;
    let knownRun = run;
    while (claimed) {
      latest = await attemptDelivery(ctx, claimed, runtime, { holdUpToMs }, knownRun);
      // The run may change between attempts (e.g. a schedule marks output_changed): re-read it then.
      knownRun = undefined;
      const heldLease = latest?.status === "pending" ? latest.lease_until : null;
      if (!latest?.next_attempt_at || !heldLease) {
        // No retry to send (accepted, dead, left to the cron tick, or the lease lost).
        if (retryLater) ctx.spare(RETRY_MESSAGE);
        return latest;
      }
      if (retryLater) {
        await retryLater(delivery.id, { at: latest.next_attempt_at, lease: heldLease });
        return latest;
      }
      await runtime.sleep(Math.max(0, Date.parse(latest.next_attempt_at) - ctx.now().getTime()));
      claimed = await claimDelivery(ctx.db, delivery.id, ...leaseFrom(ctx.now()), heldLease);
    }
    return latest;
  } catch (error) {
    // The lease runs out and the sweeper takes the delivery over.
    ctx.log.error("delivery.send_failed", { delivery_id: delivery.id, error: describeError(error) });
    return null;
  }
}

function leaseFrom(now: Date): [string, string] {
  return [now.toISOString(), addMs(now, DELIVERY_LEASE_MS).toISOString()];
}

export interface AttemptOptions {
  /**
   * A retry due within this long keeps the lease (until its time plus DELIVERY_LEASE_MS): the caller
   * sends it itself. 0: the lease is released and the cron tick finds the retry when due.
   */
  holdUpToMs: number;
}

/**
 * One attempt at a delivery whose lease the caller holds: re-check the URL, sign, send, and record
 * the attempt with the delivery's next state in one batch. Returns the delivery as recorded, or null
 * when the lease was lost meanwhile (another worker owns it; nothing is recorded).
 */
export async function attemptDelivery(
  ctx: ServiceContext,
  claimed: Delivery,
  runtime: DeliveryRuntime,
  options: AttemptOptions,
  knownRun?: Run,
): Promise<Delivery | null> {
  const started = ctx.now();
  const refused = callbackUrlProblem(claimed.url, { allowHttpCallbacks: ctx.config.ALLOW_HTTP_CALLBACKS });
  if (refused) return giveUp(ctx, claimed, started, `the callback URL ${refused}`);

  const [run, secrets] = await Promise.all([
    knownRun ?? findRun(ctx.db, claimed.run_id),
    ctx.signingSecrets(claimed.api_key_id),
  ]);
  if (!run || !secrets) return giveUp(ctx, claimed, started, "the run or its API key no longer exists");

  // A batch's delivery says what the batch did; a run's, what the run did.
  const body = claimed.batch_id
    ? await batchCallbackBody(ctx, claimed)
    : callbackBody(claimed, run, ctx.config);
  if (!body) return giveUp(ctx, claimed, started, "the batch no longer exists");
  const request = await signedRequest(
    claimed,
    JSON.stringify(body),
    activeSecrets(secrets, started),
    started,
  );
  const result = await postCallback(request, {
    timeoutMs: runtime.timeoutMs,
    now: started,
    fetch: ctx.fetch,
  });
  const finished = ctx.now();
  const attempt: DeliveryAttempt = {
    delivery_id: claimed.id,
    series: claimed.series,
    attempt: claimed.attempt_count + 1,
    attempted_at: started.toISOString(),
    status_code: result.statusCode,
    latency_ms: result.latencyMs,
    error: result.error,
  };
  const { outcome, events } = afterAttempt(ctx, claimed, attempt, result, finished, runtime, options);
  const recorded = await recordAttempt(ctx.db, claimed, finished.toISOString(), attempt, outcome, events);
  const fields = {
    delivery_id: claimed.id,
    run_id: claimed.run_id,
    series: claimed.series,
    attempt: attempt.attempt,
    status_code: result.statusCode,
    latency_ms: result.latencyMs,
    outcome: outcome.status,
  };
  if (!recorded) ctx.log.warn("delivery.lease_lost", fields);
  else if (result.ok) ctx.log.info("delivery.attempt", fields);
  else ctx.log.warn("delivery.attempt", { ...fields, error: result.error });
  return recorded;
}

/** The current secret, and the previous one while its overlap after a rotation lasts. */
function activeSecrets(secrets: SigningSecrets, now: Date): string[] {
  const previousActive =
    secrets.previous_signing_secret &&
    secrets.previous_signing_secret_expires_at &&
    secrets.previous_signing_secret_expires_at > now.toISOString();
  return previousActive && secrets.previous_signing_secret
    ? [secrets.signing_secret, secrets.previous_signing_secret]
    : [secrets.signing_secret];
}

/**
 * The body every attempt sends: the event, when it happened, and the run as GET /v1/runs/:id shows it.
 * An output stored in R2 (over INLINE_OUTPUT_MAX_BYTES) is not sent: `output_url` and `output_bytes`
 * say where to fetch it with the key's credentials.
 */
export function callbackBody(delivery: Delivery, run: Run, config: Config) {
  const timestamp = run.finished_at ?? delivery.created_at;
  if (run.output_key) {
    const base = requireSetting(config, "PUBLIC_BASE_URL").replace(/\/+$/, "");
    return {
      type: delivery.event,
      timestamp,
      data: {
        run: toRunView(run),
        output: null,
        output_url: `${base}/v1/runs/${run.id}/result`,
        output_bytes: run.output_bytes ?? null,
        error: null,
      },
    };
  }
  return {
    type: delivery.event,
    timestamp,
    data: { run: toRunView(run), output: run.output ?? null, error: run.error ?? null },
  };
}

async function signedRequest(delivery: Delivery, body: string, secrets: string[], at: Date) {
  const timestamp = Math.floor(at.getTime() / 1000);
  return {
    url: delivery.url,
    body,
    headers: {
      "content-type": "application/json",
      "user-agent": CALLBACK_USER_AGENT,
      "webhook-id": delivery.id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": await signatureHeader(secrets, delivery.id, timestamp, body),
    },
  };
}

function afterAttempt(
  ctx: ServiceContext,
  claimed: Delivery,
  attempt: DeliveryAttempt,
  result: SendResult,
  finished: Date,
  runtime: DeliveryRuntime,
  options: AttemptOptions,
): { outcome: AttemptOutcome; events: DeliveryRunEvent[] } {
  const base = { delivery_id: claimed.id, series: claimed.series, attempt: attempt.attempt };
  const attempted = (next: string | null): DeliveryRunEvent => ({
    kind: "delivery_attempted",
    detail: {
      ...base,
      status_code: result.statusCode,
      latency_ms: result.latencyMs,
      error: result.error,
      next_attempt_at: next,
    },
  });
  const last = { last_status_code: result.statusCode, last_error: result.error };

  if (result.ok) {
    return {
      outcome: { status: "succeeded", next_attempt_at: null, lease_until: null, ...last },
      events: [
        attempted(null),
        { kind: "delivery_succeeded", detail: { ...base, status_code: result.statusCode } },
      ],
    };
  }
  const next = result.gone
    ? null
    : nextDeliveryAttemptAt(ctx.config, attempt.attempt, finished, result.retryAfterMs, runtime.random);
  if (!next) {
    const reason = result.gone
      ? result.error
      : `no success after ${MAX_DELIVERY_ATTEMPTS} attempts; the last: ${result.error}`;
    return {
      outcome: { status: "dead", next_attempt_at: null, lease_until: null, ...last },
      events: [attempted(null), { kind: "delivery_dead", detail: { ...base, reason } }],
    };
  }
  // A retry due within `holdUpToMs` stays with this worker (it waits and sends, or a delayed queue
  // message does); a later one is left to the cron tick, which finds it due.
  const hold = next.getTime() - finished.getTime() <= options.holdUpToMs;
  return {
    outcome: {
      status: "pending",
      next_attempt_at: next.toISOString(),
      lease_until: hold ? addMs(next, DELIVERY_LEASE_MS).toISOString() : null,
      ...last,
    },
    events: [attempted(next.toISOString())],
  };
}

/** A delivery that cannot be sent at all (the URL is refused now, the run is gone): dead, reason kept. */
async function giveUp(ctx: ServiceContext, claimed: Delivery, at: Date, reason: string) {
  const dead = await recordAttempt(
    ctx.db,
    claimed,
    at.toISOString(),
    null,
    { status: "dead", next_attempt_at: null, lease_until: null, last_status_code: null, last_error: reason },
    [
      {
        kind: "delivery_dead",
        detail: { delivery_id: claimed.id, series: claimed.series, attempt: null, reason },
      },
    ],
  );
  ctx.log.warn("delivery.dead", { delivery_id: claimed.id, run_id: claimed.run_id, reason });
  return dead;
}

/**
 * POST /v1/deliveries/:id/retry: a succeeded or dead delivery starts a new series of attempts with
 * the same webhook-id; a pending one waiting for its next attempt gets that attempt now (same series,
 * "retry now"). Either way the attempt is sent after the response. A pending delivery whose attempt
 * is being sent at this moment is refused: it is already being retried.
 */
export async function retryDelivery(
  ctx: ServiceContext,
  apiKeyId: string,
  id: string,
  runtime: DeliveryRuntime = DEFAULT_DELIVERY_RUNTIME,
): Promise<Delivery> {
  const delivery = await findOwnedDelivery(ctx.db, apiKeyId, id);
  if (!delivery) throw new ApiError("not_found", `No delivery ${id}.`);
  if (delivery.status === "pending") {
    const claimed = await claimDeliveryNow(ctx.db, delivery, ...leaseFrom(ctx.now()), {
      kind: "delivery_retried",
      detail: { delivery_id: id, series: delivery.series, attempt: delivery.attempt_count + 1 },
    });
    if (!claimed) {
      throw new ApiError(
        "invalid_state",
        `Delivery ${id} is being sent right now; its attempt is under way. Retry it once that attempt is recorded.`,
        [{ message: "an attempt is in flight", status: "pending" }],
      );
    }
    ctx.log.info("delivery.retried", { delivery_id: id, run_id: delivery.run_id, series: claimed.series });
    ctx.waitUntil(sendClaimedDelivery(ctx, claimed, runtime));
    return claimed;
  }
  const restarted = await restartDelivery(ctx.db, delivery, ctx.now().toISOString(), {
    kind: "delivery_retried",
    detail: { delivery_id: id, series: delivery.series + 1 },
  });
  if (!restarted) {
    // It became pending between the read and the update: another retry or the sweeper has it.
    throw new ApiError("invalid_state", `Delivery ${id} is pending again: it is being sent already.`, [
      { message: "delivery is pending", status: "pending" },
    ]);
  }
  ctx.log.info("delivery.retried", { delivery_id: id, run_id: delivery.run_id, series: restarted.series });
  ctx.waitUntil(sendDelivery(ctx, id, runtime));
  return restarted;
}

export interface DeliveryWithAttempts {
  delivery: Delivery;
  /** The first page of its attempts, oldest first. */
  attempts: DeliveryAttempt[];
  /** Continues the attempts with GET /v1/deliveries/:id/attempts; null when that was all. */
  attemptsNextCursor: string | null;
}

const ATTEMPT_CURSOR_PREFIX = "att";
/** Attempts shown with each of a run's deliveries; a delivery retried by hand can have many more. */
export const ATTEMPTS_PER_DELIVERY = 20;

async function attemptPage(ctx: ServiceContext, deliveryId: string, page: PageRequest) {
  const afterId = page.cursor ? decodeSequenceCursor(ATTEMPT_CURSOR_PREFIX, page.cursor) : 0;
  const rows = await listAttempts(ctx.db, deliveryId, { afterId, limit: page.limit });
  const { items, nextCursor } = toSequencePage(rows, page.limit, ATTEMPT_CURSOR_PREFIX);
  return { attempts: items, nextCursor };
}

export async function listOwnedRunDeliveries(
  ctx: ServiceContext,
  apiKeyId: string,
  runId: string,
): Promise<DeliveryWithAttempts[]> {
  await getOwnedRun(ctx, apiKeyId, runId);
  return listRunDeliveriesWithAttempts(ctx, runId);
}

/** A run's deliveries with their attempts, for a caller that has already checked who may see the run. */
export async function listRunDeliveriesWithAttempts(
  ctx: ServiceContext,
  runId: string,
): Promise<DeliveryWithAttempts[]> {
  const deliveries = await listRunDeliveries(ctx.db, runId);
  // At most one delivery per event, so at most two reads.
  return Promise.all(
    deliveries.map(async (delivery) => {
      const page = await attemptPage(ctx, delivery.id, { limit: ATTEMPTS_PER_DELIVERY });
      return { delivery, attempts: page.attempts, attemptsNextCursor: page.nextCursor };
    }),
  );
}

/** One page of a delivery's attempts, oldest first. */
export async function listOwnedDeliveryAttempts(
  ctx: ServiceContext,
  apiKeyId: string,
  deliveryId: string,
  page: PageRequest,
): Promise<{ attempts: DeliveryAttempt[]; nextCursor: string | null }> {
  const delivery = await findOwnedDelivery(ctx.db, apiKeyId, deliveryId);
  if (!delivery) throw new ApiError("not_found", `No delivery ${deliveryId}.`);
  return attemptPage(ctx, delivery.id, page);
}

export async function listOwnedDeliveries(
  ctx: ServiceContext,
  query: PageRequest & {
    /** null: every key's deliveries (the admin's dashboard). */
    apiKeyId: string | null;
    status?: DeliveryStatus | undefined;
  },
): Promise<{ deliveries: Delivery[]; nextCursor: string | null }> {
  const rows = await listDeliveries(ctx.db, { ...query, beforeId: beforeIdOf(query.cursor) });
  const { items, nextCursor } = toPage(rows, query.limit);
  return { deliveries: items, nextCursor };
}
