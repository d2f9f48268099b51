// The Worker entry: wiring only.
import { createApp } from "./app";
import { consumeWork, DEAD_LETTER_QUEUE, recordDeadLetters } from "./cron/consumer";
import { runScheduledTick } from "./cron/dispatcher";
import type { Env } from "./env";

export { CreateLimiter } from "./limiter/create-limiter";

const app = createApp();

export default {
  fetch: app.fetch,
  async scheduled(controller, env, ctx) {
    await runScheduledTick(env, ctx, new Date(controller.scheduledTime));
  },
  // The work queue and the deliveries queue: the one consumer; the dead-letter queue: its recorder.
  async queue(batch, env, ctx) {
    if (batch.queue === DEAD_LETTER_QUEUE) await recordDeadLetters(batch, env, ctx);
    else await consumeWork(batch, env, ctx);
  },
} satisfies ExportedHandler<Env>;
