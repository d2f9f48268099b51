// Webhook delivery (reference §6): signing, delivery, retries, and the fault settings that drop,
// duplicate or delay deliveries. Every attempt is logged for GET /_sim/webhooks.
//
// Like a real sender, it holds at most `webhook_concurrency` attempts open to one receiver (URL
// origin) at a time and queues the rest in order, and it spreads retries with seeded jitter around
// Parallel's documented doubling back-off: a thousand runs ending together are a queue at the
// receiver, not a thousand sockets, and a thousand failures are not retried in the same instant.

import { createHmac, randomBytes } from "node:crypto";
import type { SimConfig } from "./config.ts";
import type { Faults } from "./faults.ts";
import { isoFromMs, isoNow, nowMs, scaled } from "./time.ts";
import type { TaskRun } from "./types.ts";

export type SignatureMode = "raw" | "whsec";

/** The HMAC key: the secret's UTF-8 bytes (documented scheme) or a whsec_ secret's base64-decoded bytes. */
export function signingKey(secret: string, mode: SignatureMode): Buffer {
  if (mode === "raw") return Buffer.from(secret, "utf8");
  const encoded = secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret;
  return Buffer.from(encoded, "base64");
}

/** One `v1,<base64>` entry: HMAC-SHA256 over "<id>.<timestamp>.<body>", standard base64 with padding. */
export function signPayload(key: Uint8Array, webhookId: string, timestamp: number, body: string): string {
  const digest = createHmac("sha256", key).update(`${webhookId}.${timestamp}.${body}`).digest("base64");
  return `v1,${digest}`;
}

/** The webhook-signature header: one entry per key, space-separated (more than one during rotation). */
export function signatureHeader(
  keys: readonly Uint8Array[],
  webhookId: string,
  timestamp: number,
  body: string,
): string {
  return keys.map((key) => signPayload(key, webhookId, timestamp, body)).join(" ");
}

/** The delivery body, compact JSON: {"timestamp","type":"task_run.status","data":<TaskRun>}. */
export function webhookBody(run: TaskRun, timestamp: string): string {
  return JSON.stringify({ timestamp, type: "task_run.status", data: run });
}

export type AttemptOutcome = "delivered" | "http_error" | "network_error" | "dropped";

export interface DeliveryAttempt {
  webhook_id: string;
  run_id: string;
  url: string;
  /** "primary", or "duplicate" for the extra copy the duplicate_webhooks fault sends. */
  copy: "primary" | "duplicate";
  /** 1-based; 0 for a dropped delivery, which never reaches the network. */
  attempt: number;
  outcome: AttemptOutcome;
  status_code: number | null;
  error: string | null;
  /** The webhook-timestamp header (Unix seconds) this attempt was signed with. */
  webhook_timestamp: number | null;
  /** When the attempt started (dropped: when it was dropped); same clock as a run's completed_at_ms. */
  sent_at: string;
  sent_at_ms: number;
  /** Until the answer (or the network error) arrived. */
  duration_ms: number;
  /** Wall-clock ms until the next attempt; null when this was the last one. */
  next_attempt_in_ms: number | null;
}

export interface WebhookCounters {
  /** HTTP attempts made, retries included. */
  sent: number;
  /** Attempts answered 2xx. */
  delivered: number;
  /** Attempts answered non-2xx or that failed on the network. */
  errored: number;
  /** Attempts after the first of a delivery. */
  retried: number;
  /** Deliveries abandoned after webhook_max_attempts. */
  failed: number;
  dropped: number;
  duplicated: number;
  delayed: number;
  /** Deliveries waiting for their first attempt or a retry. */
  pending: number;
  /** Attempts sent and not yet answered. */
  in_flight: number;
}

interface Delivery {
  webhookId: string;
  runId: string;
  /** The run's seq: indexes the seeded jitter draws of this delivery's retries. */
  seq: number;
  url: string;
  body: string;
  copy: "primary" | "duplicate";
  attempt: number;
}

/** One receiver's slots: attempts open to it, and the attempts waiting (FIFO) for a slot. */
class ReceiverSlots {
  active = 0;
  readonly #waiting: Array<() => void> = [];
  #head = 0;

  /** Runs `start` now if a slot is free, else once one frees. */
  take(limit: number, start: () => void): void {
    if (this.active < limit) {
      this.active++;
      start();
      return;
    }
    this.#waiting.push(start);
  }

  /** Frees a slot: hands it straight to the next waiting attempt, if any. */
  release(): void {
    const next = this.#waiting[this.#head];
    if (next === undefined) {
      this.active--;
      return;
    }
    this.#waiting[this.#head] = noop;
    this.#head++;
    // Compact now and then so a long queue costs O(1) per attempt, not a shift per attempt.
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting.splice(0, this.#head);
      this.#head = 0;
    }
    next();
  }

  get idle(): boolean {
    return this.active === 0 && this.#head >= this.#waiting.length;
  }
}

function noop(): void {}

/** The receiver an attempt counts against: the URL's origin (scheme, host, port). */
function receiverOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

function emptyCounters(): WebhookCounters {
  return {
    sent: 0,
    delivered: 0,
    errored: 0,
    retried: 0,
    failed: 0,
    dropped: 0,
    duplicated: 0,
    delayed: 0,
    pending: 0,
    in_flight: 0,
  };
}

export class WebhookDispatcher {
  readonly #config: () => SimConfig;
  readonly #faults: Faults;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #abort = new AbortController();
  /** Per receiver origin; replaced on reset so attempts of before the reset free nothing of after. */
  #receivers = new Map<string, ReceiverSlots>();
  #log: DeliveryAttempt[] = [];
  #counters = emptyCounters();

  constructor(config: () => SimConfig, faults: Faults) {
    this.#config = config;
    this.#faults = faults;
  }

  /** Starts delivery of a terminal run's task_run.status event. `seq` indexes the seeded fault draws. */
  dispatch(run: TaskRun, url: string, seq: number): void {
    const config = this.#config();
    const delivery: Delivery = {
      webhookId: `whevent_${randomBytes(16).toString("hex")}`,
      runId: run.run_id,
      seq,
      url,
      body: webhookBody(run, isoNow()),
      copy: "primary",
      attempt: 1,
    };
    if (this.#faults.happens("drop_webhooks", seq, config.drop_webhooks)) {
      this.#counters.dropped++;
      this.#record(delivery, {
        outcome: "dropped",
        attempt: 0,
        status: null,
        error: "dropped by drop_webhooks",
      });
      return;
    }
    let delayMs = 0;
    if (this.#faults.happens("delay_webhooks", seq, config.delay_webhooks)) {
      this.#counters.delayed++;
      delayMs = config.webhook_delay_ms;
    }
    const duplicate = this.#faults.happens("duplicate_webhooks", seq, config.duplicate_webhooks);
    if (duplicate) this.#counters.duplicated++;
    this.#schedule(delivery, delayMs, () => {
      // The copy follows once the first delivery has settled, as an at-least-once redelivery would.
      if (duplicate) this.#schedule({ ...delivery, copy: "duplicate", attempt: 1 }, 0);
    });
  }

  attempts(filter: { runId?: string } = {}): DeliveryAttempt[] {
    return filter.runId === undefined ? [...this.#log] : this.#log.filter((a) => a.run_id === filter.runId);
  }

  counters(): WebhookCounters {
    return { ...this.#counters };
  }

  /** Cancels pending deliveries and aborts in-flight ones; clears the log and the counters. */
  reset(): void {
    this.#cancelAll();
    this.#abort = new AbortController();
    this.#log = [];
    this.#counters = emptyCounters();
  }

  close(): void {
    this.#cancelAll();
  }

  #cancelAll(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#abort.abort();
    this.#receivers = new Map();
  }

  /** After `delayMs`, waits for a slot at the receiver, then attempts. Pending until the attempt starts. */
  #schedule(delivery: Delivery, delayMs: number, settled?: () => void): void {
    const counters = this.#counters;
    // The generation this delivery belongs to: after a reset, its queued attempt is never sent.
    const signal = this.#abort.signal;
    counters.pending++;
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        const origin = receiverOf(delivery.url);
        const receivers = this.#receivers;
        let slots = receivers.get(origin);
        if (!slots) {
          slots = new ReceiverSlots();
          receivers.set(origin, slots);
        }
        const held = slots;
        held.take(this.#config().webhook_concurrency, () => {
          counters.pending--;
          this.#attempt(delivery, signal, settled)
            .catch((error: unknown) => {
              console.error("sim: webhook delivery crashed", error);
            })
            .finally(() => {
              held.release();
              if (held.idle && receivers.get(origin) === held) receivers.delete(origin);
            });
        });
      },
      Math.max(0, delayMs),
    );
    timer.unref();
    this.#timers.add(timer);
  }

  /**
   * The wait before attempt `delivery.attempt + 1`: Parallel's 5 s doubling (§6.6) × time_scale,
   * spread by ±webhook_retry_jitter with a seeded draw (same seed, same waits).
   */
  #backoffMs(delivery: Delivery, config: SimConfig): number {
    const base = config.webhook_retry_base_ms * 2 ** (delivery.attempt - 1);
    const draw = this.#faults.draw(`webhook-jitter ${delivery.copy}`, delivery.seq * 64 + delivery.attempt);
    return scaled(base * (1 + config.webhook_retry_jitter * (2 * draw - 1)), config);
  }

  async #attempt(delivery: Delivery, signal: AbortSignal, settled?: () => void): Promise<void> {
    const config = this.#config();
    if (signal.aborted) return;
    const keys = [signingKey(config.webhook_secret, config.signature_mode)];
    if (config.webhook_secret_previous !== null) {
      keys.push(signingKey(config.webhook_secret_previous, config.signature_mode));
    }
    const timestamp = Math.floor(Date.now() / 1000);
    const counters = this.#counters;
    counters.sent++;
    if (delivery.attempt > 1) counters.retried++;
    counters.in_flight++;
    const startedAt = nowMs();
    let status: number | null = null;
    let error: string | null = null;
    try {
      const response = await fetch(delivery.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "taskrelay-sim",
          "webhook-id": delivery.webhookId,
          "webhook-timestamp": String(timestamp),
          "webhook-signature": signatureHeader(keys, delivery.webhookId, timestamp, delivery.body),
        },
        body: delivery.body,
        redirect: "manual",
        signal: AbortSignal.any([signal, AbortSignal.timeout(config.webhook_timeout_ms)]),
      });
      status = response.status;
      await response.body?.cancel();
    } catch (cause) {
      error = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    } finally {
      // After a reset `counters` is the old, discarded object: the new counts stay untouched.
      counters.in_flight--;
    }
    if (signal.aborted) return;

    const ok = status !== null && status >= 200 && status < 300;
    const base = { status, error, timestamp, startedAt };
    if (ok) {
      this.#counters.delivered++;
      this.#record(delivery, { ...base, outcome: "delivered" });
      settled?.();
      return;
    }
    this.#counters.errored++;
    const outcome = status === null ? "network_error" : "http_error";
    if (delivery.attempt >= config.webhook_max_attempts) {
      this.#counters.failed++;
      this.#record(delivery, { ...base, outcome });
      settled?.();
      return;
    }
    // 5 s, 10 s, 20 s, ... of Parallel's time (± jitter) before attempts 2, 3, 4, ...
    const backoffMs = this.#backoffMs(delivery, config);
    this.#record(delivery, { ...base, outcome, nextInMs: backoffMs });
    this.#schedule({ ...delivery, attempt: delivery.attempt + 1 }, backoffMs, settled);
  }

  #record(
    delivery: Delivery,
    result: {
      outcome: AttemptOutcome;
      status: number | null;
      error: string | null;
      attempt?: number;
      timestamp?: number;
      startedAt?: number;
      nextInMs?: number;
    },
  ): void {
    const sentAtMs = result.startedAt ?? nowMs();
    this.#log.push({
      webhook_id: delivery.webhookId,
      run_id: delivery.runId,
      url: delivery.url,
      copy: delivery.copy,
      attempt: result.attempt ?? delivery.attempt,
      outcome: result.outcome,
      status_code: result.status,
      error: result.error,
      webhook_timestamp: result.timestamp ?? null,
      sent_at: isoFromMs(sentAtMs),
      sent_at_ms: sentAtMs,
      duration_ms: nowMs() - sentAtMs,
      next_attempt_in_ms: result.nextInMs ?? null,
    });
    const cap = this.#config().max_webhook_log;
    // Trim in chunks so a full log costs one splice per ~10% of the cap, not one per attempt.
    if (this.#log.length > cap) this.#log.splice(0, this.#log.length - Math.floor(cap * 0.9));
  }
}
