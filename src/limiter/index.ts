// What every create path calls before it creates at Parallel: POST /v1/runs and the sweeper's
// resubmission (services/runs.ts submitRun), schedule occurrences (through createRun), and the batch
// submission (one add-runs call of up to 1,000 inputs is one request against Parallel's limit, so
// a chunk costs 1). Keep this name and signature: the batch work calls it.
import { type Env, readConfig } from "../env";
import { describeError, type Logger } from "../log";
import type { Admission } from "./fair-schedule";

export { CreateLimiter } from "./create-limiter";
export type { Admission } from "./fair-schedule";

/** The one instance: 2,000 grants a minute are far inside what one Durable Object serves. */
export const LIMITER_INSTANCE = "parallel-creates";

/**
 * Asks the limiter for `cost` creates at Parallel for `keyId` (one Durable Object call). Granted:
 * create after `waitMs` (0 in the common case; at most LIGHT_HOLD_MS). Refused: ask again after
 * `retryInMs` (the run stays `submitting`). Should the limiter itself fail, the create goes ahead:
 * Parallel's own 429 is a retry with backoff (services/runs.ts), a limiter outage must not stop
 * every create.
 */
export async function acquireCreates(
  env: Env,
  keyId: string,
  cost: number,
  log?: Logger,
): Promise<Admission> {
  try {
    const limit = readConfig(env).PARALLEL_CREATE_LIMIT_PER_MINUTE;
    return await env.CREATE_LIMITER.getByName(LIMITER_INSTANCE).acquire(keyId, cost, limit);
  } catch (error) {
    log?.warn("limiter.unavailable", { api_key_id: keyId, error: describeError(error) });
    return { granted: true, waitMs: 0 };
  }
}
