// The overview's charts, drawn as SVG on the server: no script, no external asset, nothing the
// dashboard's CSP forbids (colours are classes of the dashboard's stylesheet, never inline styles).
// Each chart is a <figure> with its title, a legend, the SVG (axes with units) described to assistive
// technology in one sentence, and the same numbers as a table in a <details> below it.
import type { Child } from "hono/jsx";
import { formatMs, linearTicks, logTicks, PLOT, PLOT_INNER } from "./scale";

export interface Series {
  /** A CSS-safe name: the colour class is `k-<key>`. */
  key: string;
  label: string;
}

export interface Category {
  /** The table's row label (`2026-12-02 14:00–15:00 UTC`). */
  label: string;
  /** The axis label under this position, if it gets one. */
  tick?: string | undefined;
  /** The category's machine value, kept on the markup (`data-x`). */
  value: string;
}

interface FrameProps {
  id: string;
  title: string;
  /** One sentence for screen readers: what is drawn and its totals. */
  summary: string;
  series: Series[];
  /** The header of the table's first column (`Hour (UTC)`). */
  categoryHeader: string;
  categories: Category[];
  /** One cell per series, per category. */
  cells: string[][];
  children: Child;
}

function ChartFrame({ id, title, summary, series, categoryHeader, categories, cells, children }: FrameProps) {
  return (
    <figure class="chart" id={id} aria-labelledby={`${id}-title`}>
      <figcaption id={`${id}-title`}>{title}</figcaption>
      <ul class="legend" aria-label={`${title}: legend`}>
        {series.map((s) => (
          <li>
            <span class={`swatch k-${s.key}`} aria-hidden="true" />
            {s.label}
          </li>
        ))}
      </ul>
      <svg
        viewBox={`0 0 ${PLOT.width} ${PLOT.height}`}
        role="img"
        aria-label={summary}
        preserveAspectRatio="xMidYMid meet"
        data-chart={id}
      >
        <title>{summary}</title>
        {children}
      </svg>
      <details class="chart-table">
        <summary>{title}: the numbers as a table</summary>
        <table>
          <thead>
            <tr>
              <th scope="col">{categoryHeader}</th>
              {series.map((s) => (
                <th scope="col">{s.label}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {categories.map((c, i) => (
              <tr>
                <th scope="row">{c.label}</th>
                {series.map((_, j) => (
                  <td>{cells[i]?.[j] ?? ""}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

const x0 = PLOT.left;
const yBottom = PLOT.top + PLOT_INNER.height;

/** The y axis: gridlines at `ticks` (drawn at `yOf`), their labels, and the unit along the side. */
function YAxis({
  ticks,
  yOf,
  label,
  unit,
}: {
  ticks: number[];
  yOf: (v: number) => number;
  label: (v: number) => string;
  unit: string;
}) {
  return (
    <g class="axis y-axis">
      {ticks.map((t) => (
        <g>
          <line class="grid" x1={x0} x2={PLOT.width - PLOT.right} y1={yOf(t)} y2={yOf(t)} />
          <text x={x0 - 6} y={yOf(t) + 4} text-anchor="end">
            {label(t)}
          </text>
        </g>
      ))}
      <text
        class="unit"
        transform={`translate(14 ${PLOT.top + PLOT_INNER.height / 2}) rotate(-90)`}
        text-anchor="middle"
      >
        {unit}
      </text>
    </g>
  );
}

/** The x axis: its baseline, a tick and label at each category that has one, and the unit under it. */
function XAxis({
  categories,
  xOf,
  unit,
}: {
  categories: Category[];
  xOf: (i: number) => number;
  unit: string;
}) {
  return (
    <g class="axis x-axis">
      <line class="baseline" x1={x0} x2={PLOT.width - PLOT.right} y1={yBottom} y2={yBottom} />
      {categories.map((c, i) =>
        c.tick ? (
          <g>
            <line class="tick" x1={xOf(i)} x2={xOf(i)} y1={yBottom} y2={yBottom + 4} />
            <text x={xOf(i)} y={yBottom + 16} text-anchor="middle">
              {c.tick}
            </text>
          </g>
        ) : null,
      )}
      <text class="unit" x={x0 + PLOT_INNER.width / 2} y={PLOT.height - 4} text-anchor="middle">
        {unit}
      </text>
    </g>
  );
}

export interface StackedBarsProps {
  id: string;
  title: string;
  summary: string;
  /** The y axis's unit (`runs per hour`). */
  unit: string;
  /** The x axis's unit (`hour, UTC`). */
  xUnit: string;
  categoryHeader: string;
  categories: Category[];
  series: Series[];
  /** values[category][series]. */
  values: number[][];
  /** How a value reads on the y axis and in the table. */
  format?: (v: number) => string;
}

/**
 * Bars stacked by series, one per category. Only non-zero segments are drawn, each a <rect> carrying
 * its series and value (`data-series`, `data-value`), so what is drawn can be counted against the data.
 */
export function StackedBars(props: StackedBarsProps) {
  const format = props.format ?? ((v: number) => String(v));
  const totals = props.values.map((row) => row.reduce((s, v) => s + v, 0));
  const ticks = linearTicks(Math.max(0, ...totals));
  const top = ticks.at(-1) ?? 1;
  const slot = PLOT_INNER.width / Math.max(1, props.categories.length);
  const barWidth = Math.max(1, slot * 0.72);
  const xOf = (i: number) => x0 + slot * i + slot / 2;
  const heightOf = (v: number) => (v / top) * PLOT_INNER.height;
  return (
    <ChartFrame
      id={props.id}
      title={props.title}
      summary={props.summary}
      series={props.series}
      categoryHeader={props.categoryHeader}
      categories={props.categories}
      cells={props.values.map((row) => row.map(format))}
    >
      <YAxis ticks={ticks} yOf={(v) => yBottom - heightOf(v)} label={format} unit={props.unit} />
      <XAxis categories={props.categories} xOf={xOf} unit={props.xUnit} />
      <g class="bars">
        {props.categories.map((c, i) => {
          let base = yBottom;
          return (
            <g data-x={c.value}>
              {props.series.map((s, j) => {
                const value = props.values[i]?.[j] ?? 0;
                if (value <= 0) return null;
                const h = heightOf(value);
                base -= h;
                return (
                  <rect
                    class={`k-${s.key}`}
                    x={round(xOf(i) - barWidth / 2)}
                    y={round(base)}
                    width={round(barWidth)}
                    height={round(h)}
                    data-series={s.key}
                    data-value={value}
                  >
                    <title>{`${c.label}: ${format(value)} ${s.label}`}</title>
                  </rect>
                );
              })}
            </g>
          );
        })}
      </g>
    </ChartFrame>
  );
}

export interface LatencyLinesProps {
  id: string;
  title: string;
  summary: string;
  unit: string;
  xUnit: string;
  categoryHeader: string;
  categories: Category[];
  series: Series[];
  /** values[category][series], in ms; null where there is no figure (nothing is drawn there). */
  values: Array<Array<number | null>>;
}

/**
 * Lines of ms values on a log axis (latencies span milliseconds to hours), a point (<circle>) at each
 * figure, the line broken where an hour has none.
 */
export function LatencyLines(props: LatencyLinesProps) {
  const figures = props.values.flat().filter((v): v is number => v !== null);
  const ticks = logTicks(Math.min(...figures, 10), Math.max(...figures, 100));
  const low = Math.log10(ticks[0] ?? 1);
  const high = Math.log10(ticks.at(-1) ?? 10);
  const yOf = (ms: number) =>
    yBottom - ((Math.log10(Math.max(ms, 1)) - low) / (high - low)) * PLOT_INNER.height;
  const slot = PLOT_INNER.width / Math.max(1, props.categories.length);
  const xOf = (i: number) => x0 + slot * i + slot / 2;
  return (
    <ChartFrame
      id={props.id}
      title={props.title}
      summary={props.summary}
      series={props.series}
      categoryHeader={props.categoryHeader}
      categories={props.categories}
      cells={props.values.map((row) => row.map((v) => (v === null ? "—" : formatMs(v))))}
    >
      <YAxis ticks={ticks} yOf={yOf} label={formatMs} unit={props.unit} />
      <XAxis categories={props.categories} xOf={xOf} unit={props.xUnit} />
      {props.series.map((s, j) => {
        // Runs of consecutive hours with a figure, each drawn as one polyline.
        const runs: Array<Array<[number, number]>> = [];
        let current: Array<[number, number]> = [];
        props.values.forEach((row, i) => {
          const v = row[j];
          if (v === null || v === undefined) {
            if (current.length) runs.push(current);
            current = [];
          } else current.push([round(xOf(i)), round(yOf(v))]);
        });
        if (current.length) runs.push(current);
        return (
          <g class={`line k-${s.key}`}>
            {runs
              .filter((r) => r.length > 1)
              .map((r) => (
                <polyline points={r.map(([x, y]) => `${x},${y}`).join(" ")} />
              ))}
            {props.values.map((row, i) => {
              const v = row[j];
              if (v === null || v === undefined) return null;
              return (
                <circle
                  cx={round(xOf(i))}
                  cy={round(yOf(v))}
                  r={3}
                  data-series={s.key}
                  data-x={props.categories[i]?.value}
                  data-value={Math.round(v)}
                >
                  <title>{`${props.categories[i]?.label}: ${s.label} ${formatMs(v)}`}</title>
                </circle>
              );
            })}
          </g>
        );
      })}
    </ChartFrame>
  );
}

export interface MeterProps {
  id: string;
  label: string;
  value: number;
  max: number;
  /** The figure as text (`$12.40 of $50.00`). */
  text: string;
}

/** One horizontal bar against a limit (this month's spend against the budget). */
export function Meter({ id, label, value, max, text }: MeterProps) {
  const share = max > 0 ? Math.min(1, value / max) : 0;
  const level = share >= 1 ? "over" : share >= 0.8 ? "near" : "ok";
  return (
    <figure class="meter" id={id}>
      <figcaption>{label}</figcaption>
      <svg viewBox="0 0 400 20" role="img" aria-label={`${label}: ${text}`} preserveAspectRatio="none">
        <rect class="meter-track" x={0} y={0} width={400} height={20} rx={4} />
        <rect
          class={`meter-fill m-${level}`}
          x={0}
          y={0}
          width={round(400 * share)}
          height={20}
          rx={4}
          data-value={value}
        />
      </svg>
      <p class="meter-text">{text}</p>
    </figure>
  );
}

const round = (n: number) => Math.round(n * 10) / 10;
