// /dashboard: the overview. Runs by outcome, callback latency and deliveries per hour over the last 24
// hours or 7 days, spend, the next schedule runs and the open batches — all from the hourly rollup
// and a few bounded reads (services/overview.ts). Charts are server-drawn SVG (../charts).
import { TERMINAL_STATUSES } from "../../db/run-states";
import type { DashboardSession } from "../../services/dashboard-sessions";
import { OVERVIEW_RANGES, type Overview, type OverviewRange } from "../../services/overview";
import type { SpendReport } from "../../services/overview-spend";
import { type Category, LatencyLines, Meter, type Series, StackedBars } from "../charts/charts";
import { formatUsd, hourLabel, hourRange } from "../charts/scale";
import { Page, ScheduleLink, Status, When } from "../components";
import { zonedTime } from "../format";

export interface OverviewPageProps {
  session: DashboardSession;
  overview: Overview;
  /** The admin's key filter (undefined: every key). */
  keyId: string | undefined;
  keyNames: Map<string, string>;
  now: Date;
  nonce: string;
}

const RANGE_LABELS: Record<OverviewRange, string> = { "24h": "last 24 hours", "7d": "last 7 days" };

/** The run outcomes drawn, in stack order; cancelled runs are counted with failed ones (both send run.failed). */
const RUN_SERIES: Series[] = [
  { key: "completed", label: "completed" },
  { key: "failed", label: "failed or cancelled" },
  { key: "expired", label: "expired" },
  { key: "rejected", label: "rejected" },
];
const DELIVERY_SERIES: Series[] = [
  { key: "first_try", label: "succeeded first time" },
  { key: "retried", label: "succeeded after retries" },
  { key: "dead", label: "dead" },
];
const LATENCY_SERIES: Series[] = [
  { key: "p50", label: "p50" },
  { key: "p95", label: "p95" },
];
/** Colour slots for processors in the spend chart, in order of first appearance. */
const SPEND_SLOTS = 6;

const sum = (values: number[]) => values.reduce((s, v) => s + v, 0);

export function OverviewPage({ session, overview, keyId, keyNames, now, nonce }: OverviewPageProps) {
  const admin = session.viewer.kind === "admin";
  const days = overview.range === "7d";
  const categories: Category[] = overview.hours.map((h) => ({
    value: h.hour,
    label: hourRange(h.hour),
    tick: days
      ? h.hour.endsWith("T00")
        ? hourLabel(h.hour, true)
        : undefined
      : Number(h.hour.slice(11, 13)) % 3 === 0
        ? hourLabel(h.hour, false)
        : undefined,
  }));
  const span = RANGE_LABELS[overview.range];
  const runValues = overview.hours.map((h) => [
    h.runs.completed,
    h.runs.failed + h.runs.cancelled,
    h.runs.expired,
    h.runs.rejected,
  ]);
  const runTotals = RUN_SERIES.map((_, j) => sum(runValues.map((row) => row[j] ?? 0)));
  const deliveryValues = overview.hours.map((h) => [
    h.deliveries.first_try,
    h.deliveries.retried,
    h.deliveries.dead,
  ]);
  const deliveryTotals = DELIVERY_SERIES.map((_, j) => sum(deliveryValues.map((row) => row[j] ?? 0)));
  const latencyValues = overview.latency.map((p) => (p ? [p.p50_ms, p.p95_ms] : [null, null]));
  const latencyHours = overview.latency.filter((p) => p !== null).length;
  const query = (range: OverviewRange) => {
    const params = new URLSearchParams({ range });
    if (keyId) params.set("key", keyId);
    return `/dashboard?${params.toString()}`;
  };
  const totalsText = (series: Series[], totals: number[]) =>
    series.map((s, j) => `${totals[j] ?? 0} ${s.label}`).join(", ");
  return (
    <Page title="Overview" session={session} section="overview" nonce={nonce}>
      <h1>Overview</h1>
      <div class="filters">
        <nav class="ranges" aria-label="Time range">
          {(Object.keys(OVERVIEW_RANGES) as OverviewRange[]).map((range) => (
            <a
              href={query(range)}
              aria-current={range === overview.range ? "page" : undefined}
              class="button"
            >
              {RANGE_LABELS[range]}
            </a>
          ))}
        </nav>
        {admin ? (
          <form method="get" action="/dashboard" class="filters">
            <input type="hidden" name="range" value={overview.range} />
            <label>
              Key
              <br />
              <select name="key">
                <option value="" selected={!keyId}>
                  every key
                </option>
                {[...keyNames].map(([id, name]) => (
                  <option value={id} selected={keyId === id}>
                    {name}
                  </option>
                ))}
              </select>
            </label>
            <button type="submit">Show</button>
          </form>
        ) : null}
      </div>
      <p class="sub">
        Hours in UTC, the current hour last. Counted as runs finish and callbacks end, so history before the
        overview existed (migration 0017) is not shown.
      </p>

      <section class="card" aria-labelledby="runs-h">
        <h2 id="runs-h">Runs</h2>
        <StackedBars
          id="runs-chart"
          title={`Runs finished per hour by outcome, ${span}`}
          summary={`Runs finished per hour by outcome over the ${span}: ${totalsText(RUN_SERIES, runTotals)}.`}
          unit="runs per hour"
          xUnit="hour (UTC)"
          categoryHeader="Hour (UTC)"
          categories={categories}
          series={RUN_SERIES}
          values={runValues}
        />
      </section>

      <section class="card" aria-labelledby="latency-h">
        <h2 id="latency-h">Callback latency</h2>
        {latencyHours === 0 ? (
          <p class="empty" data-empty="latency">
            No callback succeeded in the {span}.
          </p>
        ) : (
          <LatencyLines
            id="latency-chart"
            title={`Completion → callback latency per hour, p50 and p95, ${span}`}
            summary={`Time from a run finishing to its callback being accepted, per hour over the ${span}, p50 and p95, on a log scale; ${latencyHours} hours with callbacks.`}
            unit="latency (log scale)"
            xUnit="hour (UTC)"
            categoryHeader="Hour (UTC)"
            categories={categories}
            series={LATENCY_SERIES}
            values={latencyValues}
          />
        )}
        <p class="sub">
          From hourly histograms with buckets √2 apart: a figure shown is within a factor of 1.41 of the true
          percentile. First deliveries only (not manual retries).
        </p>
      </section>

      <section class="card" aria-labelledby="deliveries-h">
        <h2 id="deliveries-h">Callbacks</h2>
        <StackedBars
          id="deliveries-chart"
          title={`Callback deliveries ended per hour, ${span}`}
          summary={`Callback deliveries ended per hour over the ${span}: ${totalsText(DELIVERY_SERIES, deliveryTotals)}.`}
          unit="deliveries per hour"
          xUnit="hour (UTC)"
          categoryHeader="Hour (UTC)"
          categories={categories}
          series={DELIVERY_SERIES}
          values={deliveryValues}
        />
      </section>

      <SpendSection spend={overview.spend} />

      <div class="columns">
        <section class="card" aria-labelledby="upcoming-h">
          <h2 id="upcoming-h">Next schedule runs</h2>
          {overview.upcoming.length === 0 ? (
            <p class="empty">No enabled schedule.</p>
          ) : (
            <table class="list upcoming">
              <thead>
                <tr>
                  <th>When</th>
                  <th>Schedule</th>
                  {admin ? <th>Key</th> : null}
                </tr>
              </thead>
              <tbody>
                {overview.upcoming.map((u) => (
                  <tr data-upcoming={u.schedule_id}>
                    <td data-label="When">
                      <When at={u.at} now={now} />
                      <div class="sub">{zonedTime(u.at, u.timezone)}</div>
                    </td>
                    <td data-label="Schedule">
                      <ScheduleLink id={u.schedule_id} names={new Map([[u.schedule_id, u.name]])} />
                    </td>
                    {admin ? <td data-label="Key">{keyNames.get(u.api_key_id) ?? u.api_key_id}</td> : null}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>

        <section class="card" aria-labelledby="batches-h">
          <h2 id="batches-h">Open batches</h2>
          {overview.batches.length === 0 ? (
            <p class="empty">No open batch.</p>
          ) : (
            <ul class="batches">
              {overview.batches.map((b) => {
                const finished = sum(TERMINAL_STATUSES.map((s) => b.counts[s] ?? 0));
                const total = Math.max(b.input_count, sum(Object.values(b.counts)));
                return (
                  <li data-batch={b.id}>
                    <div>
                      <strong>{b.name ?? b.id}</strong> <Status status={b.status} />
                      {admin ? <span class="sub"> {keyNames.get(b.api_key_id) ?? b.api_key_id}</span> : null}
                    </div>
                    <progress
                      value={finished}
                      max={Math.max(1, total)}
                      aria-label={`${b.name ?? b.id}: ${finished} of ${total} runs finished`}
                    />
                    <div class="sub">
                      {finished} of {total} runs finished
                      {b.counts.completed ? `, ${b.counts.completed} completed` : ""} · started{" "}
                      <When at={b.created_at} now={now} />
                    </div>
                  </li>
                );
              })}
            </ul>
          )}
        </section>
      </div>
    </Page>
  );
}

/** Spend per day by processor and this month against the budget, from services/overview-spend.ts. */
function SpendSection({ spend }: { spend: SpendReport }) {
  return (
    <section class="card" aria-labelledby="spend-h" data-section="spend">
      <h2 id="spend-h">Spend</h2>
      <SpendCharts spend={spend} />
    </section>
  );
}

function SpendCharts({ spend }: { spend: SpendReport }) {
  const processors = [...new Set(spend.days.map((d) => d.processor))];
  const dayList = [...new Set(spend.days.map((d) => d.day))].sort();
  const series: Series[] = processors.map((p, i) => ({ key: `p${i % SPEND_SLOTS}`, label: p }));
  const values = dayList.map((day) =>
    processors.map((p) =>
      sum(spend.days.filter((d) => d.day === day && d.processor === p).map((d) => d.usd)),
    ),
  );
  const total = sum(spend.days.map((d) => d.usd));
  const budget = spend.budget;
  return (
    <>
      {dayList.length === 0 ? (
        <p class="empty">Nothing spent in the last 30 days.</p>
      ) : (
        <StackedBars
          id="spend-chart"
          title="Spend per day by processor"
          summary={`Spend per UTC day by processor: ${formatUsd(total)} over ${dayList.length} days.`}
          unit="USD per day"
          xUnit="day (UTC)"
          categoryHeader="Day (UTC)"
          categories={dayList.map((day, i) => ({
            value: day,
            label: day,
            tick: i % Math.max(1, Math.ceil(dayList.length / 10)) === 0 ? day.slice(5) : undefined,
          }))}
          series={series}
          values={values}
          format={formatUsd}
        />
      )}
      {budget?.limit_usd != null ? (
        <Meter
          id="budget-meter"
          label="This month against the budget"
          value={budget.spent_usd}
          max={budget.limit_usd}
          text={`${formatUsd(budget.spent_usd)} of ${formatUsd(budget.limit_usd)}; resets ${budget.resets_at.slice(0, 10)}`}
        />
      ) : budget ? (
        <p class="sub">This month: {formatUsd(budget.spent_usd)} (no budget set).</p>
      ) : null}
    </>
  );
}
