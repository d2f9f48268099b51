// Call counters per endpoint, for GET /_sim/stats. The benchmark divides these by runs created.

import { ENDPOINT_KEYS, type EndpointKey } from "./endpoints.ts";

export interface EndpointStats {
  /** Calls received per endpoint, refused ones (401, 429, injected 5xx) included. */
  endpoints: Record<EndpointKey, number>;
  /** Calls per endpoint by the status answered, e.g. {"POST /v1/tasks/runs": {"202": 10, "429": 1}}. */
  statuses: Record<EndpointKey, Record<string, number>>;
  /** Requests that matched no endpoint. */
  unmatched: number;
  /** Creates refused by the rate limit (not by the throttle fault). */
  rate_limited: number;
  /** Injected faults. */
  injected_errors: number;
  injected_throttles: number;
}

function zeroCalls(): Record<EndpointKey, number> {
  return Object.fromEntries(ENDPOINT_KEYS.map((key) => [key, 0])) as Record<EndpointKey, number>;
}

function emptyStatuses(): Record<EndpointKey, Record<string, number>> {
  return Object.fromEntries(ENDPOINT_KEYS.map((key) => [key, {}])) as Record<
    EndpointKey,
    Record<string, number>
  >;
}

export class CallStats {
  #calls = zeroCalls();
  #statuses = emptyStatuses();
  #unmatched = 0;
  rateLimited = 0;
  injectedErrors = 0;
  injectedThrottles = 0;

  /** Counts a call and returns its 0-based index for that endpoint (which seeds its fault draws). */
  call(endpoint: EndpointKey): number {
    return this.#calls[endpoint]++;
  }

  status(endpoint: EndpointKey, status: number): void {
    const byStatus = this.#statuses[endpoint];
    byStatus[status] = (byStatus[status] ?? 0) + 1;
  }

  unmatched(): void {
    this.#unmatched++;
  }

  snapshot(): EndpointStats {
    return {
      endpoints: { ...this.#calls },
      statuses: Object.fromEntries(ENDPOINT_KEYS.map((key) => [key, { ...this.#statuses[key] }])) as Record<
        EndpointKey,
        Record<string, number>
      >,
      unmatched: this.#unmatched,
      rate_limited: this.rateLimited,
      injected_errors: this.injectedErrors,
      injected_throttles: this.injectedThrottles,
    };
  }

  reset(): void {
    this.#calls = zeroCalls();
    this.#statuses = emptyStatuses();
    this.#unmatched = 0;
    this.rateLimited = 0;
    this.injectedErrors = 0;
    this.injectedThrottles = 0;
  }
}
