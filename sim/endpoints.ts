// The Parallel endpoints the simulator serves, named the way /_sim/stats and the per-endpoint
// fault settings name them. The relay's benchmark reads these keys, so they are part of the API.

export const CREATE_RUN = "POST /v1/tasks/runs";
export const RETRIEVE_RUN = "GET /v1/tasks/runs/{id}";
export const RUN_INPUT = "GET /v1/tasks/runs/{id}/input";
export const RUN_RESULT = "GET /v1/tasks/runs/{id}/result";
export const RUN_EVENTS = "GET /v1/tasks/runs/{id}/events";
export const CREATE_GROUP = "POST /v1/tasks/groups";
export const RETRIEVE_GROUP = "GET /v1/tasks/groups/{id}";
export const ADD_GROUP_RUNS = "POST /v1/tasks/groups/{id}/runs";
export const GROUP_EVENTS = "GET /v1/tasks/groups/{id}/events";
export const GROUP_RUNS = "GET /v1/tasks/groups/{id}/runs";
export const RETRIEVE_GROUP_RUN = "GET /v1/tasks/groups/{id}/runs/{run_id}";

export const ENDPOINT_KEYS = [
  CREATE_RUN,
  RETRIEVE_RUN,
  RUN_INPUT,
  RUN_RESULT,
  RUN_EVENTS,
  CREATE_GROUP,
  RETRIEVE_GROUP,
  ADD_GROUP_RUNS,
  GROUP_EVENTS,
  GROUP_RUNS,
  RETRIEVE_GROUP_RUN,
] as const;

/** The endpoints that create runs: they share the rate limit and the default throttle_rate. */
export const CREATE_ENDPOINTS: ReadonlySet<EndpointKey> = new Set([CREATE_RUN, ADD_GROUP_RUNS]);

export type EndpointKey = (typeof ENDPOINT_KEYS)[number];
