import type { RunSummary } from "../../db/runs";
import type { Occurrence, OccurrenceOutcome, Schedule } from "../../db/schedules";
import type { DashboardSession } from "../../services/dashboard-sessions";
import { toScheduleDetailView } from "../../services/schedule-view";
import { CsrfField, Page, Pager, Status, ValueView, When } from "../components";
import { utcTime, zonedTime } from "../format";

function ScheduleActions({
  schedule,
  session,
  back,
}: {
  schedule: Schedule;
  session: DashboardSession;
  back: string;
}) {
  const action = (verb: "pause" | "resume" | "trigger", label: string, primary = false) => (
    <form class="inline" method="post" action={`/dashboard/schedules/${schedule.id}/${verb}`}>
      <CsrfField session={session} />
      <input type="hidden" name="back" value={back} />
      <button type="submit" class={primary ? "primary" : undefined}>
        {label}
      </button>
    </form>
  );
  return (
    <div class="actions">
      {schedule.enabled ? action("pause", "Pause") : action("resume", "Resume")}
      {action("trigger", "Run now", true)}
    </div>
  );
}

const scheduleState = (s: Schedule) => (s.enabled ? "enabled" : "paused");

/** What each occurrence came to, in the words of GET /v1/schedules/:id/occurrences' description. */
const OUTCOME_LABELS: Record<OccurrenceOutcome, string> = {
  fired: "fired",
  triggered: "triggered by hand",
  skipped_overlap: "skipped: previous run in flight",
  skipped_missed: "skipped: missed",
  skipped_budget: "skipped: budget",
  failed: "failed",
};

export function SchedulesPage(props: {
  session: DashboardSession;
  schedules: Schedule[];
  cursor: string | undefined;
  nextCursor: string | null;
  keyNames: Map<string, string>;
  now: Date;
  nonce: string;
  notice?: string | undefined;
}) {
  const { session, schedules, now } = props;
  const admin = session.viewer.kind === "admin";
  return (
    <Page title="Schedules" session={session} section="schedules" notice={props.notice} nonce={props.nonce}>
      <h1>Schedules</h1>
      {schedules.length === 0 ? (
        <p class="empty">No schedules yet: create one with POST /v1/schedules.</p>
      ) : (
        <table class="list schedules">
          <thead>
            <tr>
              <th>Schedule</th>
              <th>When</th>
              <th>State</th>
              <th>Next run (local time)</th>
              <th>Last run</th>
              {admin ? <th>Key</th> : null}
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {schedules.map((s) => (
              <tr data-schedule-id={s.id}>
                <td data-label="Schedule">
                  <a href={`/dashboard/schedules/${s.id}`}>{s.name}</a>
                  <div class="sub">
                    <code>{s.id}</code>
                  </div>
                </td>
                <td data-label="When">
                  <code>{s.cron}</code>
                  <div class="sub">{s.timezone}</div>
                </td>
                <td data-label="State">
                  <Status status={scheduleState(s)} />
                </td>
                <td data-label="Next run">
                  {s.next_run_at ? (
                    <>
                      <span data-next-run>{zonedTime(s.next_run_at, s.timezone)}</span>
                      <div class="sub">
                        <When at={s.next_run_at} now={now} />
                      </div>
                    </>
                  ) : (
                    <span class="empty">{s.enabled ? "never again" : "paused"}</span>
                  )}
                </td>
                <td data-label="Last run">
                  {s.last_run_id ? (
                    <>
                      <a href={`/dashboard/runs/${s.last_run_id}`}>
                        <code>{s.last_run_id}</code>
                      </a>
                      <div class="sub">
                        fired <When at={s.last_fired_at} now={now} />
                      </div>
                    </>
                  ) : (
                    <span class="empty">none yet</span>
                  )}
                </td>
                {admin ? <td data-label="Key">{props.keyNames.get(s.api_key_id) ?? s.api_key_id}</td> : null}
                <td data-label="Actions">
                  <ScheduleActions schedule={s} session={session} back="/dashboard/schedules" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager base="/dashboard/schedules" params={{}} cursor={props.cursor} nextCursor={props.nextCursor} />
    </Page>
  );
}

export function SchedulePage(props: {
  session: DashboardSession;
  schedule: Schedule;
  runs: RunSummary[];
  occurrences: Occurrence[];
  keyName: string | null;
  now: Date;
  nonce: string;
  notice?: string | undefined;
}) {
  const { session, schedule: s, runs, now } = props;
  const fireTimes = toScheduleDetailView(s).next_fire_times;
  return (
    <Page title={s.name} session={session} section="schedules" notice={props.notice} nonce={props.nonce}>
      <h1>
        {s.name} <Status status={scheduleState(s)} />
      </h1>
      <section class="card">
        <dl class="facts">
          <dt>Id</dt>
          <dd>
            <code>{s.id}</code>
          </dd>
          <dt>Cron</dt>
          <dd>
            <code>{s.cron}</code> in {s.timezone}
          </dd>
          <dt>Policies</dt>
          <dd>
            overlap {s.overlap} · missed {s.missed} · notify {s.notify}
            {s.chain_interactions ? " · chains interactions" : ""}
          </dd>
          <dt>Callback</dt>
          <dd>{s.callback_url ? <code>{s.callback_url}</code> : <span class="empty">none</span>}</dd>
          <dt>Last success</dt>
          <dd>
            {s.last_success_run_id ? (
              <a href={`/dashboard/runs/${s.last_success_run_id}`}>
                <code>{s.last_success_run_id}</code>
              </a>
            ) : (
              <span class="empty">none yet</span>
            )}
          </dd>
          {props.keyName ? (
            <>
              <dt>Key</dt>
              <dd>{props.keyName}</dd>
            </>
          ) : null}
        </dl>
        <ScheduleActions schedule={s} session={session} back={`/dashboard/schedules/${s.id}`} />
      </section>
      <section class="card" id="next-runs">
        <h2>Next runs in {s.timezone}</h2>
        {fireTimes.length === 0 ? (
          <p class="empty">
            {s.enabled ? "The cron never fires again." : "Paused: resume to schedule runs."}
          </p>
        ) : (
          <ol>
            {fireTimes.map((t) => (
              <li>
                {zonedTime(t.utc, s.timezone)} <span class="sub">({utcTime(t.utc)})</span>
              </li>
            ))}
          </ol>
        )}
      </section>
      <section class="card" id="template">
        <h2>Template</h2>
        <p>
          Processor <code>{s.template.processor}</code>
        </p>
        <ValueView value={s.template.input} />
      </section>
      <section class="card" id="occurrences">
        <h2>Occurrences</h2>
        {props.occurrences.length === 0 ? (
          <p class="empty">None yet: the schedule has not come due.</p>
        ) : (
          <table class="list">
            <thead>
              <tr>
                <th>Scheduled for</th>
                <th>Outcome</th>
                <th>Run</th>
                <th>Reason</th>
              </tr>
            </thead>
            <tbody>
              {props.occurrences.map((o) => (
                <tr data-occurrence={o.outcome}>
                  <td data-label="Scheduled for">
                    {zonedTime(o.scheduled_at, s.timezone)}
                    <div class="sub">
                      decided <When at={o.decided_at} now={now} />
                    </div>
                  </td>
                  <td data-label="Outcome">
                    <Status status={o.outcome} label={OUTCOME_LABELS[o.outcome]} />
                  </td>
                  <td data-label="Run">
                    {o.run_id ? (
                      <a href={`/dashboard/runs/${o.run_id}`}>
                        <code>{o.run_id}</code>
                      </a>
                    ) : (
                      <span class="empty">none</span>
                    )}
                  </td>
                  <td data-label="Reason">{o.reason ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section class="card" id="schedule-runs">
        <h2>Last runs</h2>
        {runs.length === 0 ? (
          <p class="empty">No runs yet.</p>
        ) : (
          <table class="list">
            <thead>
              <tr>
                <th>Run</th>
                <th>Status</th>
                <th>Age</th>
              </tr>
            </thead>
            <tbody>
              {runs.map((run) => (
                <tr>
                  <td data-label="Run">
                    <a href={`/dashboard/runs/${run.id}`}>
                      <code>{run.id}</code>
                    </a>
                  </td>
                  <td data-label="Status">
                    <Status status={run.status} />
                  </td>
                  <td data-label="Age">
                    <When at={run.created_at} now={now} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </Page>
  );
}
