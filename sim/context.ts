// What the route handlers share. Built once per simulator by createSimulator (server.ts).

import type { SimConfig } from "./config.ts";
import type { Faults } from "./faults.ts";
import type { GroupStore } from "./groups.ts";
import type { SlidingWindowLimiter } from "./rate-limit.ts";
import type { RunStore } from "./runs.ts";
import type { CallStats } from "./stats.ts";
import type { WebhookDispatcher } from "./webhooks.ts";

export interface SimContext {
  config(): SimConfig;
  setConfig(next: SimConfig): void;
  readonly runs: RunStore;
  readonly groups: GroupStore;
  readonly webhooks: WebhookDispatcher;
  readonly faults: Faults;
  readonly stats: CallStats;
  readonly limiter: SlidingWindowLimiter;
  /** Close functions of open SSE streams. */
  readonly openStreams: Set<() => void>;
  /** Release functions of blocked /result calls. */
  readonly waiters: Set<() => void>;
  readonly startedAt: string;
}
