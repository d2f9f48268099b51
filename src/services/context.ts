// What every domain verb gets: the database, configuration, Parallel, a clock, a logger, and a way
// to finish work after the response. No Hono here: routes and cron jobs both build one.
import { type Config, type Env, readConfig } from "../env";
import type { Logger } from "../log";
import { createLogger } from "../log";
import { createParallelGateway, type ParallelGateway } from "../parallel/client";

export interface ServiceContext {
  db: D1Database;
  config: Config;
  /** Created on first use: routes that never call Parallel work without PARALLEL_API_KEY. */
  readonly parallel: ParallelGateway;
  now: () => Date;
  log: Logger;
  waitUntil: (work: Promise<unknown>) => void;
}

export interface ContextOptions {
  now?: () => Date;
  log?: Logger;
  parallel?: ParallelGateway;
}

export function createServiceContext(
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  options: ContextOptions = {},
): ServiceContext {
  const config = readConfig(env);
  let parallel = options.parallel;
  return {
    db: env.DB,
    config,
    get parallel() {
      parallel ??= createParallelGateway(config);
      return parallel;
    },
    now: options.now ?? (() => new Date()),
    log: options.log ?? createLogger(),
    waitUntil: (work) => execution.waitUntil(work),
  };
}
