import type { Delivery, DeliveryAttempt } from "../../db/deliveries";
import type { DashboardSession } from "../../services/dashboard-sessions";
import type { DeliveryWithAttempts } from "../../services/deliveries";
import { progressFinished } from "../../services/run-progress";
import { toRunInputView } from "../../services/run-view";
import type { RunDetail } from "../../services/viewer";
import { CsrfField, ExternalLink, Page, ScheduleLink, Status, ValueView, When } from "../components";
import { hostOf, runCost, utcTime } from "../format";
import { PROGRESS_SCRIPT } from "../progress-script";

export interface RunPageProps extends RunDetail {
  session: DashboardSession;
  keyName: string | null;
  nonce: string;
  now: Date;
  notice?: string | undefined;
}

export function RunPage(props: RunPageProps) {
  const { run, timeline, deliveries, session, now } = props;
  const live = !progressFinished(run);
  const input = toRunInputView(run);
  const output = run.output as { type?: string; content?: unknown; basis?: unknown } | null;
  return (
    <Page title={run.id} session={session} section="runs" notice={props.notice} nonce={props.nonce}>
      <h1>
        Run <code>{run.id}</code> <Status status={run.status} live />
      </h1>
      <section class="card">
        <dl class="facts">
          <dt>Processor</dt>
          <dd>{run.processor}</dd>
          <dt>Cost</dt>
          <dd data-cost>{runCost(run)}</dd>
          <dt>Created</dt>
          <dd>
            <When at={run.created_at} now={now} /> <span class="sub">({utcTime(run.created_at)})</span>
          </dd>
          <dt>Submitted</dt>
          <dd>
            <When at={run.submitted_at} now={now} />
          </dd>
          <dt>Finished</dt>
          <dd>
            <When at={run.finished_at} now={now} />
          </dd>
          {run.schedule_id ? (
            <>
              <dt>Schedule</dt>
              <dd>
                <ScheduleLink id={run.schedule_id} names={props.scheduleNames} />
                {run.output_changed === null || run.output_changed === undefined
                  ? null
                  : run.output_changed
                    ? " · output changed since the last success"
                    : " · output unchanged"}
              </dd>
            </>
          ) : null}
          <dt>Parallel run</dt>
          <dd>
            {run.parallel_run_id ? <code>{run.parallel_run_id}</code> : <span class="empty">not yet</span>}
          </dd>
          <dt>Callback</dt>
          <dd>{run.callback_url ? <code>{run.callback_url}</code> : <span class="empty">none</span>}</dd>
          {props.keyName ? (
            <>
              <dt>Key</dt>
              <dd>{props.keyName}</dd>
            </>
          ) : null}
        </dl>
      </section>

      {live ? (
        <section class="card" id="progress" data-progress-url={`/dashboard/runs/${run.id}/progress`}>
          <h2>Progress</h2>
          <progress max="100" aria-label="Research progress"></progress>
          <p class="progress-text" data-progress-text>
            {run.status === "submitting"
              ? "Waiting for Parallel to accept the run…"
              : "Waiting for progress…"}
          </p>
          <ol class="messages" data-progress-messages aria-live="polite"></ol>
          <script nonce={props.nonce} dangerouslySetInnerHTML={{ __html: PROGRESS_SCRIPT }} />
        </section>
      ) : null}

      {run.error ? (
        <section class="card" id="error">
          <h2>Error</h2>
          <p class="error">
            <code>{run.error.code}</code>: {run.error.message}
          </p>
        </section>
      ) : null}

      {output ? (
        <>
          <section class="card" id="output">
            <h2>Output {output.type ? <span class="badge">{output.type}</span> : null}</h2>
            <ValueView value={output.content} />
          </section>
          <Basis basis={output.basis} />
        </>
      ) : props.outputStart ? (
        <section class="card" id="output">
          <h2>Output</h2>
          <p class="sub">
            {`${props.outputStart.bytes.toLocaleString("en-US")} bytes of JSON; the first ${props.outputStart.text.length.toLocaleString("en-US")} characters are shown. `}
            <a href={`/dashboard/runs/${run.id}/output`} download={`${run.id}-output.json`}>
              Download the whole output
            </a>
          </p>
          <div class="text-output mono">{props.outputStart.text}…</div>
        </section>
      ) : null}

      {run.warnings && run.warnings.length > 0 ? (
        <section class="card" id="warnings">
          <h2>Warnings</h2>
          <ValueView value={run.warnings} />
        </section>
      ) : null}

      <section class="card" id="input">
        <h2>Input</h2>
        <ValueView value={input.input} />
        {input.task_spec ? (
          <details data-section="task-spec">
            <summary>Task spec</summary>
            <ValueView value={input.task_spec} />
          </details>
        ) : null}
        {input.metadata ? (
          <details data-section="metadata">
            <summary>Metadata</summary>
            <ValueView value={input.metadata} />
          </details>
        ) : null}
        {input.source_policy ? (
          <details data-section="source-policy">
            <summary>Source policy</summary>
            <ValueView value={input.source_policy} />
          </details>
        ) : null}
        {input.mcp_servers ? (
          <details data-section="mcp-servers">
            <summary>MCP servers</summary>
            <ValueView value={input.mcp_servers} />
          </details>
        ) : null}
      </section>

      <section class="card" id="timeline">
        <h2>Timeline</h2>
        <table class="list">
          <thead>
            <tr>
              <th>When</th>
              <th>What</th>
              <th>Detail</th>
            </tr>
          </thead>
          <tbody>
            {timeline.map((event) => (
              <tr>
                <td data-label="When" class="nowrap">
                  <time datetime={event.at}>{utcTime(event.at)}</time>
                </td>
                <td data-label="What">{event.kind.replaceAll("_", " ")}</td>
                <td data-label="Detail" class="sub">
                  <Details detail={event.detail} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      <section class="card" id="deliveries">
        <h2>Deliveries</h2>
        {deliveries.length === 0 ? (
          <p class="empty">{run.callback_url ? "None yet: the run is not finished." : "No callback URL."}</p>
        ) : (
          deliveries.map((d) => (
            <DeliveryCard delivery={d} session={session} back={`/dashboard/runs/${run.id}`} now={now} />
          ))
        )}
      </section>
    </Page>
  );
}

/** A timeline event's detail as `name value` pairs that wrap, not one long line of JSON. */
function Details({ detail }: { detail: Record<string, unknown> | null }) {
  if (!detail) return null;
  return (
    <>
      {Object.entries(detail)
        .filter(([, value]) => value !== null && value !== undefined)
        .map(([name, value]) => (
          <span class="kv">
            <span class="k">{name.replaceAll("_", " ")}</span>{" "}
            <span class="mono">{typeof value === "string" ? value : JSON.stringify(value)}</span>
          </span>
        ))}
    </>
  );
}

interface BasisEntry {
  field?: unknown;
  citations?: Array<{ url?: unknown; title?: unknown; excerpts?: unknown }>;
  reasoning?: unknown;
  confidence?: unknown;
}

function Basis({ basis }: { basis: unknown }) {
  if (!Array.isArray(basis) || basis.length === 0) return null;
  return (
    <section class="card" id="basis">
      <h2>Basis</h2>
      {(basis as BasisEntry[]).map((entry) => (
        <div class="basis">
          <h3>
            <code>{String(entry.field ?? "output")}</code>{" "}
            {typeof entry.confidence === "string" ? (
              <span class={`badge confidence-${entry.confidence}`}>{entry.confidence} confidence</span>
            ) : null}
          </h3>
          {typeof entry.reasoning === "string" ? <p>{entry.reasoning}</p> : null}
          {Array.isArray(entry.citations) && entry.citations.length > 0 ? (
            <ul class="citations">
              {entry.citations.map((citation) => (
                <li>
                  <ExternalLink href={citation.url}>
                    {typeof citation.title === "string" && citation.title
                      ? citation.title
                      : String(citation.url)}
                  </ExternalLink>
                  {hostOf(citation.url) ? (
                    <span class="sub domain" data-citation-domain>
                      {" "}
                      {hostOf(citation.url)}
                    </span>
                  ) : null}
                  {Array.isArray(citation.excerpts)
                    ? citation.excerpts
                        .filter((e): e is string => typeof e === "string")
                        .slice(0, 3)
                        .map((excerpt) => <blockquote>{excerpt}</blockquote>)
                    : null}
                </li>
              ))}
            </ul>
          ) : null}
        </div>
      ))}
    </section>
  );
}

export function DeliveryCard({
  delivery: { delivery, attempts },
  session,
  back,
  now,
}: {
  delivery: DeliveryWithAttempts;
  session: DashboardSession;
  back: string;
  now: Date;
}) {
  return (
    <div class="card delivery" data-delivery-id={delivery.id}>
      <p>
        <code>{delivery.id}</code> <Status status={delivery.status} />{" "}
        <span class="sub">{delivery.event}</span>
      </p>
      <p class="sub">
        to <code>{delivery.url}</code>
      </p>
      <NextAttempt delivery={delivery} now={now} />
      {delivery.last_error ? <p class="sub">Last error: {delivery.last_error}</p> : null}
      {attempts.length > 0 ? <Attempts attempts={attempts} /> : null}
      <RetryForm delivery={delivery} session={session} back={back} now={now} />
    </div>
  );
}

function Attempts({ attempts }: { attempts: DeliveryAttempt[] }) {
  return (
    <table class="list attempts">
      <thead>
        <tr>
          <th>Series</th>
          <th>Attempt</th>
          <th>When</th>
          <th>HTTP</th>
          <th>Latency</th>
          <th>Error</th>
        </tr>
      </thead>
      <tbody>
        {attempts.map((a) => (
          <tr>
            <td data-label="Series">{String(a.series)}</td>
            <td data-label="Attempt">{String(a.attempt)}</td>
            <td data-label="When" class="nowrap">
              <time datetime={a.attempted_at}>{utcTime(a.attempted_at)}</time>
            </td>
            <td data-label="HTTP">{a.status_code === null ? "no response" : String(a.status_code)}</td>
            <td data-label="Latency">{`${a.latency_ms} ms`}</td>
            <td data-label="Error">{a.error ?? ""}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** When a pending delivery's next attempt is due ("in 4 min", and the UTC time). */
export function NextAttempt({ delivery, now }: { delivery: Delivery; now: Date }) {
  if (delivery.status !== "pending" || !delivery.next_attempt_at) return null;
  return (
    <p class="sub" data-next-attempt={delivery.next_attempt_at}>
      Next attempt <When at={delivery.next_attempt_at} now={now} /> ({utcTime(delivery.next_attempt_at)})
    </p>
  );
}

const RETRY_LABELS: Record<Delivery["status"], string> = {
  dead: "Retry delivery",
  pending: "Retry now",
  succeeded: "Send again",
};

/** POST /v1/deliveries/:id/retry from a page: a new series for a dead or succeeded delivery, the next attempt now for a pending one. */
export function RetryForm({
  delivery,
  session,
  back,
  now,
}: {
  delivery: Delivery;
  session: DashboardSession;
  back: string;
  now: Date;
}) {
  // An attempt in flight holds the lease; the API would refuse a retry until it is recorded.
  if (
    delivery.status === "pending" &&
    delivery.lease_until &&
    Date.parse(delivery.lease_until) > now.getTime()
  ) {
    return <span class="sub">being sent now</span>;
  }
  return (
    <form class="inline" method="post" action={`/dashboard/deliveries/${delivery.id}/retry`}>
      <CsrfField session={session} />
      <input type="hidden" name="back" value={back} />
      <button type="submit" class={delivery.status === "succeeded" ? undefined : "primary"}>
        {RETRY_LABELS[delivery.status]}
      </button>
    </form>
  );
}
