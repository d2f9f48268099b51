// Peak memory of the workerd that runs the relay while it answers one request, from Linux's /proc:
// the peak resident set (VmHWM) is reset before the request (clear_refs 5) and read after it, so the
// figure is what that request pushed the process to above where it stood. RSS covers the isolate's
// heap and local D1's page cache alike; Cloudflare's 128 MB limit is on the isolate alone, so this
// is an upper bound of what the request costs there.
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";

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

// The isolates' own heaps, from the V8 inspector: Cloudflare's 128 MB is a limit on the Worker's
// isolate (its JS heap and the ArrayBuffers it holds), not on the process. `wrangler dev` runs the
// relay's isolate behind its inspector proxy (one DevTools client at a time, which we take), and
// local R2 and D1 in isolates of their own in the same workerd, whose runtime inspector lists them.

/** Ports the processes of a process group listen on (from /proc, no `ss` needed). */
function listeningPorts(pgid: number): number[] {
  const inodes = new Map<string, number>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // State 0A: LISTEN.
      if (f[3] === "0A" && f[1] && f[9]) inodes.set(f[9], Number.parseInt(f[1].split(":")[1] ?? "", 16));
    }
  }
  const ports = new Set<number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]) !== pgid) continue;
      for (const fd of readdirSync(`/proc/${entry}/fd`)) {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/fd/${fd}`))?.[1];
        const port = inode ? inodes.get(inode) : undefined;
        if (port) ports.add(port);
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return [...ports];
}

interface InspectorTarget {
  id: string;
  webSocketDebuggerUrl: string;
}

/** The inspector targets in a wrangler process group: the relay (its proxy's `/ws`) and workerd's own. */
export async function inspectorTargets(pgid: number): Promise<Map<string, string>> {
  const targets = new Map<string, string>();
  for (const port of listeningPorts(pgid)) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/json/list`, {
        signal: AbortSignal.timeout(2_000),
      });
      if (!response.ok) continue;
      for (const t of (await response.json()) as InspectorTarget[]) {
        // wrangler's proxy names its one target by a UUID and serves it at /ws: the user Worker.
        const name = new URL(t.webSocketDebuggerUrl).pathname === "/ws" ? "relay" : t.id;
        targets.set(name, t.webSocketDebuggerUrl);
      }
    } catch {
      // not an inspector
    }
  }
  return targets;
}

/** One isolate's heap, MB: V8's used heap and the ArrayBuffers' backing stores, their sum. */
export interface IsolateHeap {
  used_mb: number;
  array_buffers_mb: number;
  total_mb: number;
}

interface HeapUsage {
  usedSize: number;
  backingStorageSize?: number;
}

/** A DevTools session with one isolate. */
export class InspectorSession {
  private readonly socket: WebSocket;
  // Far from the ids wrangler's proxy uses for its own messages to the isolate.
  private next = 2 ** 30;
  private readonly waiting = new Map<number, (result: unknown) => void>();

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
      if (message.id !== undefined) this.waiting.get(message.id)?.(message.result);
    });
  }

  static async open(url: string): Promise<InspectorSession> {
    // wrangler's proxy wants an Origin of localhost (as DevTools' would be).
    const socket = new WebSocket(url, { headers: { Origin: "http://127.0.0.1" } } as never);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("error", () => reject(new Error(`inspector ${url} refused`)), { once: true });
    });
    return new InspectorSession(socket);
  }

  send<T>(method: string, timeoutMs = 30_000): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`inspector ${method} timed out`)), timeoutMs);
      this.waiting.set(id, (result) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(result as T);
      });
      this.socket.send(JSON.stringify({ id, method }));
    });
  }

  async heap(): Promise<IsolateHeap> {
    const usage = await this.send<HeapUsage>("Runtime.getHeapUsage");
    const used = usage.usedSize;
    const buffers = usage.backingStorageSize ?? 0;
    return {
      used_mb: mbOfBytes(used),
      array_buffers_mb: mbOfBytes(buffers),
      total_mb: mbOfBytes(used + buffers),
    };
  }

  /**
   * What is live: workerd's inspector has no HeapProfiler.collectGarbage, but a heap snapshot begins
   * with a full GC (the snapshot itself, streamed as events, is ignored). Slow: seconds.
   */
  async live(): Promise<IsolateHeap> {
    await this.send("HeapProfiler.takeHeapSnapshot", 120_000);
    return this.heap();
  }

  close() {
    this.socket.close();
  }
}

const mbOfBytes = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

export interface HeapPeak {
  /** Before the request: live (after a full GC) for the relay, as sampled for the others. */
  before: IsolateHeap;
  /** The highest total seen, sampling every ~10 ms while the request ran (garbage included). */
  peak: IsolateHeap;
  /** After the request, as `before`. */
  after: IsolateHeap;
  samples: number;
}

/**
 * Runs `request` while sampling each session's heap; reports each isolate's peak. Sampling misses a
 * peak shorter than its interval, and V8 answers between tasks, so the peak is a lower bound of the
 * true one (RSS is the upper bound). `live` names the sessions measured after a full GC before and after.
 */
export async function heapPeaksOf(
  sessions: ReadonlyMap<string, InspectorSession>,
  live: ReadonlySet<string>,
  request: () => Promise<void>,
): Promise<Record<string, HeapPeak>> {
  const result: Record<string, HeapPeak> = {};
  const settled = (name: string, session: InspectorSession) =>
    live.has(name) ? session.live() : session.heap();
  for (const [name, session] of sessions) {
    const before = await settled(name, session);
    result[name] = { before, peak: before, after: before, samples: 0 };
  }
  let running = true;
  const sampling = [...sessions].map(async ([name, session]) => {
    const entry = result[name] as HeapPeak;
    while (running) {
      const heap = await session.heap();
      entry.samples++;
      if (heap.total_mb > entry.peak.total_mb) entry.peak = heap;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
  try {
    await request();
  } finally {
    running = false;
    await Promise.all(sampling);
  }
  for (const [name, session] of sessions) (result[name] as HeapPeak).after = await settled(name, session);
  return result;
}
