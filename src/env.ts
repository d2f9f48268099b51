// Bindings as wrangler provides them, and the configuration the code reads from them,
// validated once with zod so that a bad setting is a clear error, not a surprise later.
import { z } from "zod";
import type { WorkMessage } from "./cron/work";
import { ApiError } from "./errors";
import type { CreateLimiter } from "./limiter/create-limiter";
import { PROCESSORS } from "./parallel/processors";

export interface Env {
  DB: D1Database;
  /** Outputs too large for a D1 row (services/outputs.ts). */
  OUTPUTS: R2Bucket;
  /** Background work (src/cron/): the cron tick sends, this Worker's queue() handler consumes. */
  WORK_QUEUE?: Queue<WorkMessage>;
  /** Callback delivery retries on a queue of their own (src/cron/work.ts queueBinding). */
  DELIVERY_QUEUE?: Queue<WorkMessage>;
  /** The create limiter (src/limiter/): one instance counts every create at Parallel. */
  CREATE_LIMITER: DurableObjectNamespace<CreateLimiter>;
  PARALLEL_API_KEY?: string;
  PARALLEL_BASE_URL?: string;
  PARALLEL_WEBHOOK_SECRET?: string;
  PARALLEL_WEBHOOK_SECRET_PREVIOUS?: string;
  PUBLIC_BASE_URL?: string;
  ADMIN_TOKEN?: string;
  ALLOW_HTTP_CALLBACKS?: string;
  TIME_SCALE?: string;
  /** TIME_SCALE's old name (it scaled the poller's waits first), still accepted. */
  POLL_TIME_SCALE?: string;
  WEBHOOK_TOLERANCE_SECONDS?: string;
  SWEEP_BATCH_SIZE?: string;
  SUBREQUEST_BUDGET?: string;
  RUN_EXPIRY_MARGIN_SECONDS?: string;
  SUBMIT_MAX_ATTEMPTS?: string;
  PARALLEL_CREATE_LIMIT_PER_MINUTE?: string;
  LOG_LEVEL?: string;
  /** JSON: USD per 1,000 runs by processor, over the default prices (src/pricing/prices.ts). */
  PARALLEL_PRICES?: string;
}

const flag = z
  .enum(["true", "false", "1", "0", ""])
  .optional()
  .transform((v) => v === "true" || v === "1");

const positiveNumber = (fallback: number) => z.coerce.number().positive().finite().default(fallback);
const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const optionalSecret = z
  .string()
  .optional()
  .transform((v) => (v ? v : undefined));

/**
 * `{"pro": 120, "ultra-fast": 310}`: USD per 1,000 runs, by processor name. Each bad entry is its own
 * issue at `PARALLEL_PRICES.<name>`, so the error names it (its value is no secret: prices only).
 */
const prices = z
  .string()
  .optional()
  .transform((text, ctx): unknown => {
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      ctx.addIssue({ code: "custom", message: 'must be JSON, e.g. {"pro": 120}' });
      return z.NEVER;
    }
  })
  .pipe(
    z
      .record(z.string(), z.number().nonnegative().finite())
      .superRefine((table, ctx) => {
        for (const name of Object.keys(table)) {
          if (!PROCESSORS.has(name)) {
            ctx.addIssue({ code: "custom", path: [name], message: `${name} is not a known processor` });
          }
        }
      })
      .optional(),
  );

const configSchema = z.object({
  PARALLEL_API_KEY: optionalSecret,
  PARALLEL_BASE_URL: z.url().default("https://api.parallel.ai"),
  PARALLEL_WEBHOOK_SECRET: optionalSecret,
  PARALLEL_WEBHOOK_SECRET_PREVIOUS: optionalSecret,
  PUBLIC_BASE_URL: z.url().optional(),
  ADMIN_TOKEN: optionalSecret,
  ALLOW_HTTP_CALLBACKS: flag,
  /**
   * Multiplies every wait the relay schedules (services/timing.ts): the poller's (first poll,
   * backoff, expiry), callback delivery's retry backoff (not the 15 s attempt timeout, not a
   * receiver's Retry-After), the queue's dispatch lease, a progress stream's. 0.001 suits a
   * simulator at 0.001: a callback receiver that fails its first attempts is still delivered within
   * seconds. Set as TIME_SCALE, or by its old name POLL_TIME_SCALE.
   */
  TIME_SCALE: positiveNumber(1),
  WEBHOOK_TOLERANCE_SECONDS: positiveInt(300),
  /** The most due rows one job hands to the queue per tick (pages of 100); SUBREQUEST_BUDGET may allow fewer. */
  SWEEP_BATCH_SIZE: positiveInt(1000),
  /**
   * The most D1 calls plus outbound requests one invocation makes: a cron tick (two per page of
   * messages), a queue consumer batch (its work after the batch included) or a progress stream.
   * Workers Free allows 50 per invocation (D1 queries count as subrequests); Paid 1,000 D1 queries.
   * A consumer batch reserves each message's worst case (cron/costs.ts) and a progress stream ends
   * before it runs out (the client reconnects), so the platform never refuses a call half-way
   * through a step.
   */
  SUBREQUEST_BUDGET: positiveInt(50),
  RUN_EXPIRY_MARGIN_SECONDS: positiveInt(3600),
  SUBMIT_MAX_ATTEMPTS: positiveInt(8),
  /**
   * Creates at Parallel a minute, for all keys together (src/limiter/): Parallel's default rate
   * limit. A create over it is accepted and sent when its turn comes, shared fairly between keys.
   */
  PARALLEL_CREATE_LIMIT_PER_MINUTE: positiveInt(2000),
  /** The least severe log level written: info (default) logs every step, warn only trouble. */
  LOG_LEVEL: z.enum(["info", "warn", "error"]).default("info"),
  /** USD per 1,000 runs by processor over Parallel's published prices (src/pricing/prices.ts). */
  PARALLEL_PRICES: prices,
});

export type Config = z.infer<typeof configSchema>;

const cache = new WeakMap<Env, Config>();

/** Parses the configuration from the bindings; throws a configuration_error naming every bad setting. */
export function readConfig(env: Env): Config {
  const cached = cache.get(env);
  if (cached) return cached;
  const oldScaleName = env.TIME_SCALE === undefined && env.POLL_TIME_SCALE !== undefined;
  const parsed = configSchema.safeParse({ ...env, TIME_SCALE: env.TIME_SCALE ?? env.POLL_TIME_SCALE });
  if (!parsed.success) {
    // Only names and zod's message: a setting's value may be a secret. A bad scale is named as set.
    const named = (path: string) => (path === "TIME_SCALE" && oldScaleName ? "POLL_TIME_SCALE" : path);
    const details = parsed.error.issues.map((i) => ({ path: named(i.path.join(".")), message: i.message }));
    throw new ApiError(
      "configuration_error",
      `taskrelay is misconfigured: ${details.map((d) => `${d.path} (${d.message})`).join(", ")}`,
      details,
    );
  }
  cache.set(env, parsed.data);
  return parsed.data;
}

type SecretName = "PARALLEL_API_KEY" | "PARALLEL_WEBHOOK_SECRET" | "ADMIN_TOKEN" | "PUBLIC_BASE_URL";

/** The setting, or a configuration_error that says which one to set. */
export function requireSetting(config: Config, name: SecretName): string {
  const value = config[name];
  if (!value) {
    throw new ApiError("configuration_error", `taskrelay is misconfigured: ${name} is not set.`);
  }
  return value;
}
