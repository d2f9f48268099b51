// Server-sent event responses: `event: <type>\ndata: <json>\n\n` messages. Two kinds:
// - live streams (a run's events, a group's events): keep-alives as `: ping` comment lines (the
//   SDK JSON-parses every event's data, so a keep-alive must not be an event) and a maximum
//   lifetime;
// - snapshot streams (a group's runs): a finite list written as the client reads it, so a
//   10,000-run stream with outputs is never held in memory at once.
// Both register their close function in openStreams so reset and shutdown can end them.

/** Floors so a tiny time_scale cannot make a busy loop of keep-alives or instant closes. */
export const MIN_KEEPALIVE_MS = 20;
export const MIN_STREAM_MS = 50;

export interface SseEvent {
  type: string;
}

export interface SseStreamOptions {
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  openStreams: Set<() => void>;
}

export interface LiveStreamOptions extends SseStreamOptions {
  keepaliveMs: number;
  lifetimeMs: number;
}

export interface SseChannel {
  send(event: SseEvent): void;
  /** Runs `fn` after `ms` unless the stream has closed by then. */
  after(ms: number, fn: () => void): void;
  /** Runs `fn` once when the stream closes (by either side). */
  onClose(fn: () => void): void;
  close(): void;
}

const HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  connection: "keep-alive",
};

const encoder = new TextEncoder();

function frame(event: SseEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** A stream that `start` fills; keep-alives and the lifetime begin once `start` returns open. */
export function liveStreamResponse(
  options: LiveStreamOptions,
  start: (channel: SseChannel) => void,
): Response {
  const { signal, openStreams } = options;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const cleanups: (() => void)[] = [];
  let keepalive: ReturnType<typeof setInterval> | undefined;
  let closed = false;
  let close: () => void = () => {};

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (chunk: string): void => {
        if (closed) return;
        try {
          controller.enqueue(encoder.encode(chunk));
        } catch {
          // The client went away between two writes.
          close();
        }
      };
      close = () => {
        if (closed) return;
        closed = true;
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        clearInterval(keepalive);
        for (const cleanup of cleanups.splice(0)) cleanup();
        openStreams.delete(close);
        signal.removeEventListener("abort", close);
        try {
          controller.close();
        } catch {
          // Already cancelled by the client.
        }
      };
      const after = (ms: number, fn: () => void): void => {
        if (closed) return;
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!closed) fn();
        }, ms);
        timers.add(timer);
      };
      openStreams.add(close);
      signal.addEventListener("abort", close, { once: true });

      start({
        send: (event) => write(frame(event)),
        after,
        onClose: (fn) => {
          if (closed) fn();
          else cleanups.push(fn);
        },
        close: () => close(),
      });
      if (closed) return;
      keepalive = setInterval(() => write(": ping\n\n"), Math.max(MIN_KEEPALIVE_MS, options.keepaliveMs));
      after(Math.max(MIN_STREAM_MS, options.lifetimeMs), close);
    },
    cancel() {
      close();
    },
  });
  return new Response(body, { status: 200, headers: HEADERS });
}

/** Events in batches from `next` (null = the end), pulled at the client's pace. */
export function snapshotStreamResponse(options: SseStreamOptions, next: () => SseEvent[] | null): Response {
  const { signal, openStreams } = options;
  let closed = false;
  let close: () => void = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      close = () => {
        if (closed) return;
        closed = true;
        openStreams.delete(close);
        signal.removeEventListener("abort", close);
        try {
          controller.close();
        } catch {
          // Already cancelled by the client.
        }
      };
      openStreams.add(close);
      signal.addEventListener("abort", close, { once: true });
    },
    pull(controller) {
      if (closed) return;
      let events = next();
      while (events !== null && events.length === 0) events = next();
      if (events === null) {
        close();
        return;
      }
      controller.enqueue(encoder.encode(events.map(frame).join("")));
    },
    cancel() {
      close();
    },
  });
  return new Response(body, { status: 200, headers: HEADERS });
}
