import type { RunSummary } from "../../db/runs";
import { RUN_STATUSES } from "../../db/runs";
import type { DashboardSession } from "../../services/dashboard-sessions";
import { Page, Pager, ScheduleLink, Status, When } from "../components";
import { inputPreview, runCost } from "../format";

export interface RunsPageProps {
  session: DashboardSession;
  runs: RunSummary[];
  status: string | undefined;
  cursor: string | undefined;
  nextCursor: string | null;
  keyNames: Map<string, string>;
  /** Schedule names by id, for the runs a schedule started. */
  scheduleNames: Map<string, string>;
  now: Date;
  nonce: string;
  notice?: string | undefined;
}

export function RunsPage({
  session,
  runs,
  status,
  cursor,
  nextCursor,
  keyNames,
  scheduleNames,
  now,
  nonce,
  notice,
}: RunsPageProps) {
  const admin = session.viewer.kind === "admin";
  return (
    <Page title="Runs" session={session} section="runs" notice={notice} nonce={nonce}>
      <h1>Runs</h1>
      <form class="filters" method="get" action="/dashboard/runs">
        <label>
          Status
          <br />
          <select name="status">
            <option value="" selected={!status}>
              any
            </option>
            {RUN_STATUSES.map((s) => (
              <option value={s} selected={status === s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      {runs.length === 0 ? (
        <p class="empty">No runs{status ? ` with status ${status}` : ""} yet.</p>
      ) : (
        <table class="list runs">
          <thead>
            <tr>
              <th>Run</th>
              <th>Status</th>
              <th>Processor</th>
              <th>Age</th>
              <th>Schedule / batch</th>
              {admin ? <th>Key</th> : null}
            </tr>
          </thead>
          <tbody>
            {runs.map((run) => (
              <tr data-run-id={run.id}>
                <td data-label="Run">
                  <a href={`/dashboard/runs/${run.id}`}>
                    <code>{run.id}</code>
                  </a>
                  <div class="sub">{inputPreview(run.input)}</div>
                </td>
                <td data-label="Status">
                  <Status status={run.status} />
                </td>
                <td data-label="Processor">
                  {run.processor}
                  <div class="sub">{runCost(run)}</div>
                </td>
                <td data-label="Age">
                  <When at={run.created_at} now={now} />
                </td>
                <td data-label="Schedule">
                  {run.schedule_id ? (
                    <ScheduleLink id={run.schedule_id} names={scheduleNames} />
                  ) : run.batch_id ? (
                    <a href={`/dashboard/batches#${run.batch_id}`} data-batch-link>
                      batch <code>{run.batch_id}</code> #{run.batch_index}
                    </a>
                  ) : (
                    <span class="empty">—</span>
                  )}
                </td>
                {admin ? <td data-label="Key">{keyNames.get(run.api_key_id) ?? run.api_key_id}</td> : null}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager base="/dashboard/runs" params={{ status }} cursor={cursor} nextCursor={nextCursor} />
    </Page>
  );
}
