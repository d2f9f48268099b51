// Scales and labels for the overview's charts: pure functions, so the charts stay markup.

/** The chart's drawing area inside its SVG viewBox (the SVG scales to the page's width). */
export const PLOT = { width: 960, height: 220, left: 64, right: 16, top: 14, bottom: 42 } as const;
export const PLOT_INNER = {
  width: PLOT.width - PLOT.left - PLOT.right,
  height: PLOT.height - PLOT.top - PLOT.bottom,
} as const;

/** Round ticks from 0 up to at least `max`: 0, 5, 10, 15 or 0, 200, 400… (at most ~5 intervals). */
export function linearTicks(max: number): number[] {
  if (max <= 0) return [0, 1];
  const rough = max / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * magnitude >= rough) ?? 10) * magnitude;
  const top = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return ticks;
}

/** Powers of ten in ms spanning [min, max] (a log axis: latencies run from ms to hours). */
export function logTicks(min: number, max: number): number[] {
  const low = Math.floor(Math.log10(Math.max(1, min)));
  const high = Math.max(low + 1, Math.ceil(Math.log10(Math.max(1, max))));
  return Array.from({ length: high - low + 1 }, (_, i) => 10 ** (low + i));
}

/** A duration in ms as a person reads it: 18 ms, 1.2 s, 4 min, 3 h. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${trim(ms / 1000)} s`;
  if (ms < 3_600_000) return `${trim(ms / 60_000)} min`;
  return `${trim(ms / 3_600_000)} h`;
}

/** A dollar amount: $0.05, $12.40, $1,234. */
export function formatUsd(usd: number): string {
  const digits = usd >= 1000 ? 0 : 2;
  return `$${usd.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })}`;
}

const trim = (n: number) => (n >= 10 ? String(Math.round(n)) : n.toFixed(1).replace(/\.0$/, ""));

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/** An hour (`YYYY-MM-DDTHH`) as an axis label: `14:00`, or the day (`Mon 30`) at midnight on a 7-day axis. */
export function hourLabel(hour: string, days: boolean): string {
  if (!days) return `${hour.slice(11, 13)}:00`;
  const date = new Date(`${hour}:00:00Z`);
  return `${WEEKDAYS[date.getUTCDay()]} ${date.getUTCDate()}`;
}

/** An hour as a table reads it: `2026-12-02 14:00–15:00 UTC`. */
export function hourRange(hour: string): string {
  const h = Number(hour.slice(11, 13));
  return `${hour.slice(0, 10)} ${String(h).padStart(2, "0")}:00–${String((h + 1) % 24).padStart(2, "0")}:00 UTC`;
}
