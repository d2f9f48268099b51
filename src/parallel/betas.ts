// Which `parallel-beta` flags a create request needs, from the fields it carries. One table, so a
// beta-gated field can never be sent without its header (Parallel ignores or refuses it then).
import type { TaskRunCreateParams } from "parallel-web/resources/task-run";

type Body = Omit<TaskRunCreateParams, "betas">;

const BETA_FOR_FIELD: ReadonlyArray<{ beta: string; needed: (body: Body) => boolean }> = [
  { beta: "webhook-2025-08-12", needed: (b) => b.webhook != null },
  { beta: "events-sse-2025-07-24", needed: (b) => b.enable_events === true },
  { beta: "mcp-server-2025-07-17", needed: (b) => (b.mcp_servers?.length ?? 0) > 0 },
];

export function betasFor(body: Body): string[] {
  return BETA_FOR_FIELD.filter((entry) => entry.needed(body)).map((entry) => entry.beta);
}
