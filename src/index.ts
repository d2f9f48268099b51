// The Worker entry: wiring only.
import { createApp } from "./app";
import { runScheduledTick } from "./cron/dispatcher";
import type { Env } from "./env";

const app = createApp();

export default {
  fetch: app.fetch,
  async scheduled(controller, env, ctx) {
    await runScheduledTick(env, ctx, new Date(controller.scheduledTime));
  },
} satisfies ExportedHandler<Env>;
