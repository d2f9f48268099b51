// Dead letters: queue messages whose work kept failing, recorded by the dead-letter queue's consumer.
// Replaying sends each to its job's queue again (the work queue, or the deliveries queue); the consumer takes each row only if it is still due
// and free, so a replay never does work twice (the cron tick may have sent the row again already).

import type { WorkMessage } from "../cron/work";
import { WorkMessageSchema } from "../cron/work";
import { countDeadLetters, takeDeadLetters } from "../db/dead-letters";
import type { ServiceContext } from "./context";

/** sendBatch's limit: a replay sends one page of dead letters. */
const REPLAY_PAGE = 100;

export function deadLetterCount(ctx: ServiceContext): Promise<number> {
  return countDeadLetters(ctx.db);
}

export async function replayDeadLetters(
  ctx: ServiceContext,
  /** The queue a kind's messages go to (its job's: cron/work.ts queueBinding). */
  queueOf: (kind: string) => Pick<Queue<WorkMessage>, "sendBatch">,
): Promise<{ replayed: number; dropped: number }> {
  const letters = await takeDeadLetters(ctx.db, REPLAY_PAGE);
  const messages = letters.flatMap((letter) => {
    const parsed = WorkMessageSchema.safeParse(JSON.parse(letter.body));
    return parsed.success ? [{ body: parsed.data }] : [];
  });
  // Sent after the rows are gone: should the send fail, the items' own rows are still due and the
  // cron tick sends them again; only the record of their failure is lost.
  const byQueue = new Map<Pick<Queue<WorkMessage>, "sendBatch">, typeof messages>();
  for (const message of messages) {
    const queue = queueOf(message.body.kind);
    byQueue.set(queue, [...(byQueue.get(queue) ?? []), message]);
  }
  for (const [queue, batch] of byQueue) await queue.sendBatch(batch);
  ctx.log.info("queue.dead_letters_replayed", {
    replayed: messages.length,
    dropped: letters.length - messages.length,
  });
  return { replayed: messages.length, dropped: letters.length - messages.length };
}
