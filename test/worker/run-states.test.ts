// The run's life (db/run-states.ts): each step's guard lets a guarded update through from exactly the
// states the step names, on real D1 — and Parallel's word never changes a run Parallel finished.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { RUN_STATUSES, RUN_STEPS, type RunStep, stepGuard } from "../../src/db/run-states";
import { storeFinishedRun } from "./delivery-harness";
import { createTenant } from "./harness";

/** Which states a step's guarded update goes through from: one run in each state, one UPDATE each. */
async function statesStepChanges(step: RunStep, overrides: { result_stored_at: string | null }) {
  const tenant = await createTenant();
  const changed: string[] = [];
  for (const status of RUN_STATUSES) {
    const run = await storeFinishedRun(tenant.id, { status, ...overrides });
    const result = await env.DB.prepare(
      `UPDATE runs SET updated_at = updated_at WHERE id = ? AND (${stepGuard(step).sql})`,
    )
      .bind(run.id)
      .run();
    if (result.meta.changes > 0) changed.push(status);
  }
  return changed;
}

describe("the run's steps", () => {
  it("change a run only from the states each names", async () => {
    for (const step of Object.keys(RUN_STEPS) as RunStep[]) {
      const from = [...RUN_STEPS[step].from].sort();
      // Result missing: every step but finishing a completed run applies as its states say.
      const missing = await statesStepChanges(step, { result_stored_at: null });
      expect(missing.sort(), step).toEqual(step === "finish" ? from.filter((s) => s !== "completed") : from);
    }
  });

  it("leave a run Parallel finished, or refused, alone whatever Parallel says later", async () => {
    const changed = await statesStepChanges("parallel_status", { result_stored_at: null });
    for (const final of ["completed", "failed", "cancelled", "rejected"])
      expect(changed).not.toContain(final);
    expect(changed).toContain("expired");
  });

  it("finish a completed run only once its result is stored, and fetch a result only while it is missing", async () => {
    const stored = new Date().toISOString();
    expect(await statesStepChanges("finish", { result_stored_at: stored })).toContain("completed");
    expect(await statesStepChanges("result", { result_stored_at: stored })).toEqual([]);
    expect(await statesStepChanges("result", { result_stored_at: null })).toEqual(["completed"]);
  });
});
