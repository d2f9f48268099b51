// Peak memory of the workerd that runs the relay while it answers one request, from Linux's /proc:
// the peak resident set (VmHWM) is reset before the request (clear_refs 5) and read after it, so the
// figure is what that request pushed the process to above where it stood. RSS covers the isolate's
// heap and local D1's page cache alike; Cloudflare's 128 MB limit is on the isolate alone, so this
// is an upper bound of what the request costs there.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

/** The pid of the workerd that runs the Worker (not wrangler's proxy) in a wrangler process group. */
export function workerPid(pgid: number): number | null {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && cmdline.includes("workerd") && cmdline.includes("--inspector-addr")) {
        return Number(entry);
      }
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

function statusKb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`));
  return Number(line?.split(/\s+/)[1] ?? Number.NaN);
}

export interface PeakMemory {
  /** Resident set before the request, MB. */
  rss_before_mb: number;
  /** The highest resident set while the request ran, MB. */
  peak_rss_mb: number;
  /** peak_rss_mb − rss_before_mb: what the request added at its worst. */
  peak_added_mb: number;
}

const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;

/** Runs `request` (after a settle) and reports the worker process's peak resident set during it. */
export async function peakMemoryOf(pid: number, request: () => Promise<void>): Promise<PeakMemory> {
  // "5" resets the peak resident set to the current one (Linux ≥ 4.0).
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
  const before = statusKb(pid, "VmRSS");
  await request();
  const peak = statusKb(pid, "VmHWM");
  return { rss_before_mb: mb(before), peak_rss_mb: mb(peak), peak_added_mb: mb(peak - before) };
}
