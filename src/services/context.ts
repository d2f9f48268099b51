// What every domain verb gets: the database, configuration, Parallel, a clock, a logger, and a way
// to finish work after the response. No Hono here: routes and cron jobs both build one.
import { findSigningSecrets, type SigningSecrets } from "../db/keys";
import { type D1Usage, emptyUsage, meteredDatabase } from "../db/metered";
import { type Config, type Env, readConfig } from "../env";
import { type Admission, acquireCreates } from "../limiter";
import type { Logger } from "../log";
import { createLogger, describeError } from "../log";
import { createParallelGateway, type ParallelGateway } from "../parallel/client";

export interface ServiceContext {
  /** D1, metered: every query this context makes is counted in `usage`. */
  db: D1Database;
  usage: D1Usage;
  /** R2: outputs too large for a D1 row (services/outputs.ts). */
  outputs: R2Bucket;
  config: Config;
  /** Created on first use: routes that never call Parallel work without PARALLEL_API_KEY. */
  readonly parallel: ParallelGateway;
  /** Outbound HTTP (callback POSTs): the global fetch, or one that counts its calls (cron/invocation-calls.ts). */
  fetch: typeof fetch;
  /** The create limiter (src/limiter/): asked before every create at Parallel. */
  acquireCreates: (keyId: string, cost: number) => Promise<Admission>;
  now: () => Date;
  log: Logger;
  /** Continues work after the response (ctx.waitUntil), tracked so `settled()` can wait for it. */
  waitUntil: (work: Promise<unknown>) => void;
  /** Resolves once all work passed to waitUntil, including work it started in turn, has settled. */
  settled: () => Promise<void>;
  /**
   * Says that `calls` of the worst case this work was admitted with (cron/costs.ts) can no longer
   * happen (the run is still active, the result was small, the callback was accepted): the queue
   * consumer lowers the message's reservation and may start another message at once. Nothing elsewhere.
   */
  spare: (calls: number) => void;
  /**
   * Set inside a queue message: a delivery attempt refused with a retry due within Queues' delay
   * keeps its lease, and its retry is this delayed message (retry_deliveries) rather than a wait here.
   */
  retryDeliveryLater?: (deliveryId: string, later: { at: string; lease: string }) => Promise<void>;
  /**
   * A key's signing secrets for a delivery's signature: read from D1 each time, or, inside a queue
   * consumer invocation, once per key and shared by the batch's messages (cron/consumer.ts).
   */
  signingSecrets: (apiKeyId: string) => Promise<SigningSecrets | null>;
}

export interface ContextOptions {
  now?: () => Date;
  log?: Logger;
  parallel?: ParallelGateway;
  fetch?: typeof fetch;
  spare?: (calls: number) => void;
  retryDeliveryLater?: ServiceContext["retryDeliveryLater"];
  signingSecrets?: ServiceContext["signingSecrets"];
}

export function createServiceContext(
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  options: ContextOptions = {},
): ServiceContext {
  const config = readConfig(env);
  const usage = emptyUsage();
  const log = options.log ?? createLogger();
  const pending = new Set<Promise<unknown>>();
  let parallel = options.parallel;
  const db = meteredDatabase(env.DB, usage);
  return {
    db,
    usage,
    outputs: env.OUTPUTS,
    config,
    get parallel() {
      parallel ??= createParallelGateway(config);
      return parallel;
    },
    // The global looked up per call: tests replace it (MSW) after contexts are made.
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    acquireCreates: (keyId, cost) => acquireCreates(env, keyId, cost, log),
    now: options.now ?? (() => new Date()),
    log,
    waitUntil: (work) => {
      // Background work has nobody to throw to: its failure is logged, and the sweeper redoes the step.
      const tracked = work
        .catch((error: unknown) => log.error("background.error", { error: describeError(error) }))
        .finally(() => pending.delete(tracked));
      pending.add(tracked);
      execution.waitUntil(tracked);
    },
    settled: async () => {
      while (pending.size > 0) await Promise.all(pending);
    },
    spare: options.spare ?? (() => {}),
    retryDeliveryLater: options.retryDeliveryLater,
    signingSecrets: options.signingSecrets ?? ((apiKeyId) => findSigningSecrets(db, apiKeyId)),
  };
}
