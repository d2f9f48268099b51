// Problems only the operator can fix: Parallel refusing taskrelay's own API key (401) or account
// (402). Runs wait for the fix instead of failing (services/runs.ts, services/run-poll.ts); the
// operator learns of it from one error line per request or queue consumer invocation and from /healthz.
import {
  clearOperatorAlert,
  listOperatorAlerts,
  PARALLEL_CREDENTIALS_ALERT,
  raiseOperatorAlert,
} from "../db/operator-alerts";
import type { ParallelFailure } from "../parallel/client";
import type { ServiceContext } from "./context";

export type OperatorFailure = Extract<ParallelFailure, { kind: "operator" }>;

/** What to fix, in words for the operator; Parallel's message after it (never a secret of ours). */
export function operatorReason(outcome: OperatorFailure): string {
  return outcome.status === 401
    ? `Parallel refused taskrelay's API key (HTTP 401): check PARALLEL_API_KEY. ${outcome.message}`
    : `Parallel refused the account for lack of credit (HTTP 402): add credit to the Parallel account. ${outcome.message}`;
}

// Per logger (a request's, a consumer batch's: its messages' contexts share it) and step, whether the
// problem was already noted: one error line (and one alert write) each, however many runs it holds up.
const noted = new WeakMap<ServiceContext["log"], Set<string>>();

/**
 * Logs the problem once per context and step. A create returns the statement recording it for
 * /healthz the first time (for the caller's batch); a poll only logs: /healthz follows creates,
 * and the next create Parallel accepts resolves it.
 */
export function noteOperatorProblem(
  ctx: ServiceContext,
  outcome: OperatorFailure,
  step: "create" | "poll",
): D1PreparedStatement[] {
  const steps = noted.get(ctx.log) ?? new Set<string>();
  noted.set(ctx.log, steps);
  if (steps.has(step)) return [];
  steps.add(step);
  const reason = operatorReason(outcome);
  ctx.log.error("parallel.operator_error", { parallel_status: outcome.status, step, reason });
  if (step === "poll") return [];
  return [
    raiseOperatorAlert(ctx.db, {
      name: PARALLEL_CREDENTIALS_ALERT,
      status: outcome.status,
      reason,
      at: ctx.now().toISOString(),
    }),
  ];
}

/** A create Parallel accepted resolves the alert (deleting nothing writes nothing). */
export const resolveOperatorProblem = (ctx: ServiceContext): D1PreparedStatement =>
  clearOperatorAlert(ctx.db, PARALLEL_CREDENTIALS_ALERT);

export async function operatorProblems(ctx: ServiceContext) {
  return (await listOperatorAlerts(ctx.db)).map((alert) => ({
    name: alert.name,
    parallel_status: alert.status,
    reason: alert.reason,
    since: alert.first_seen_at,
    last_seen_at: alert.last_seen_at,
  }));
}
