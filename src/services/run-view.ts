// How a run is shown: to its owner through the API, and inside callback deliveries.
import type { Run, RunSummary } from "../db/runs";
import { microToUsd } from "../pricing/prices";
import type { RunView } from "../schemas/runs";

export function toRunView(run: RunSummary): RunView {
  return {
    id: run.id,
    status: run.status,
    processor: run.processor,
    parallel_run_id: run.parallel_run_id,
    interaction_id: run.interaction_id,
    previous_interaction_id: run.previous_interaction_id,
    schedule_id: run.schedule_id,
    batch_id: run.batch_id ?? null,
    batch_index: run.batch_index ?? null,
    metadata: run.metadata,
    callback: run.callback_url ? { url: run.callback_url } : null,
    warnings:
      run.relay_warnings || run.warnings ? [...(run.relay_warnings ?? []), ...(run.warnings ?? [])] : null,
    error: run.error,
    // Set only once the output is stored (inline or in R2); lists do not read outputs.
    result_available: run.result_stored_at !== null,
    created_at: run.created_at,
    updated_at: run.updated_at,
    submitted_at: run.submitted_at,
    finished_at: run.finished_at,
    result_stored_at: run.result_stored_at,
    output_changed: run.output_changed ?? null,
    // The price is stored with the run; it is owed only once Parallel has the run.
    cost_usd: run.parallel_run_id ? microToUsd(run.cost_micro_usd ?? 0) : 0,
  };
}

export const REDACTED = "[redacted]";

/** MCP header values are credentials for the user's MCP server: kept for resubmission, never shown. */
export function redactMcpServers(servers: Run["mcp_servers"]): Run["mcp_servers"] {
  return (
    servers?.map((server) => {
      const headers = server.headers as Record<string, string> | null | undefined;
      if (!headers) return server;
      return { ...server, headers: Object.fromEntries(Object.keys(headers).map((name) => [name, REDACTED])) };
    }) ?? null
  );
}

export function toRunInputView(run: Run) {
  return {
    processor: run.processor,
    input: run.input,
    task_spec: run.task_spec,
    metadata: run.metadata,
    source_policy: run.source_policy,
    previous_interaction_id: run.previous_interaction_id,
    enable_events: run.enable_events,
    mcp_servers: redactMcpServers(run.mcp_servers),
    callback: run.callback_url ? { url: run.callback_url } : null,
  };
}
