import type { BatchOverview } from "../../services/batch-overview";
import type { DashboardSession } from "../../services/dashboard-sessions";
import { CsrfField, Page, Pager, Status, When } from "../components";

/** The statuses shown as counts, in the run's order of life. */
const COUNTED = [
  "submitting",
  "queued",
  "running",
  "completed",
  "failed",
  "cancelled",
  "rejected",
  "expired",
] as const;

export function BatchesPage(props: {
  session: DashboardSession;
  batches: BatchOverview[];
  cursor: string | undefined;
  nextCursor: string | null;
  keyNames: Map<string, string>;
  now: Date;
  nonce: string;
  notice?: string | undefined;
}) {
  const { session, batches, now } = props;
  const admin = session.viewer.kind === "admin";
  return (
    <Page title="Batches" session={session} section="batches" notice={props.notice} nonce={props.nonce}>
      <h1>Batches</h1>
      {batches.length === 0 ? (
        <p class="empty">No batches yet: create one with POST /v1/batches.</p>
      ) : (
        <table class="list batches">
          <thead>
            <tr>
              <th>Batch</th>
              <th>Status</th>
              <th>Progress</th>
              <th>Runs by status</th>
              <th>Created</th>
              {admin ? <th>Key</th> : null}
              <th>Results</th>
            </tr>
          </thead>
          <tbody>
            {batches.map(({ batch, counts, finished, etaAt }) => {
              const total = counts.total ?? 0;
              const percent = total > 0 ? Math.floor((finished / total) * 100) : 0;
              const open = !["completed", "cancelled"].includes(batch.status);
              return (
                <tr id={batch.id} data-batch-id={batch.id}>
                  <td data-label="Batch">
                    {batch.name ?? <span class="empty">unnamed</span>}
                    <div class="sub">
                      <code>{batch.id}</code>
                    </div>
                  </td>
                  <td data-label="Status">
                    <Status status={batch.status} />
                  </td>
                  <td data-label="Progress">
                    <progress
                      max={total}
                      value={finished}
                      aria-label={`${finished} of ${total} runs finished`}
                    />
                    <div class="progress-text" data-progress>
                      {finished.toLocaleString("en-US")} of {total.toLocaleString("en-US")} finished (
                      {percent}%)
                    </div>
                    {etaAt ? (
                      <div class="sub" data-eta>
                        done <When at={etaAt} now={now} /> at this pace
                      </div>
                    ) : null}
                  </td>
                  <td data-label="Runs by status">
                    <ul class="counts">
                      {COUNTED.filter((s) => (counts[s] ?? 0) > 0).map((s) => (
                        <li data-count={s}>
                          <Status status={s} /> {(counts[s] ?? 0).toLocaleString("en-US")}
                        </li>
                      ))}
                    </ul>
                  </td>
                  <td data-label="Created">
                    <When at={batch.created_at} now={now} />
                  </td>
                  {admin ? (
                    <td data-label="Key">{props.keyNames.get(batch.api_key_id) ?? batch.api_key_id}</td>
                  ) : null}
                  <td data-label="Results">
                    <div class="actions">
                      <a href={`/dashboard/batches/${batch.id}/results.jsonl`} download>
                        JSONL
                      </a>
                      <a href={`/dashboard/batches/${batch.id}/results.csv`} download>
                        CSV
                      </a>
                      {open ? (
                        <form class="inline" method="post" action={`/dashboard/batches/${batch.id}/cancel`}>
                          <CsrfField session={session} />
                          <button type="submit">Cancel</button>
                        </form>
                      ) : null}
                    </div>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <Pager base="/dashboard/batches" params={{}} cursor={props.cursor} nextCursor={props.nextCursor} />
    </Page>
  );
}
