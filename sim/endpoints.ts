// The Parallel endpoints the simulator serves, named the way /_sim/stats and the per-endpoint
// fault settings name them. The relay's benchmark reads these keys, so they are part of the API.

export const CREATE_RUN = "POST /v1/tasks/runs";
export const RETRIEVE_RUN = "GET /v1/tasks/runs/{id}";
export const RUN_INPUT = "GET /v1/tasks/runs/{id}/input";
export const RUN_RESULT = "GET /v1/tasks/runs/{id}/result";
export const RUN_EVENTS = "GET /v1/tasks/runs/{id}/events";

export const ENDPOINT_KEYS = [CREATE_RUN, RETRIEVE_RUN, RUN_INPUT, RUN_RESULT, RUN_EVENTS] as const;

export type EndpointKey = (typeof ENDPOINT_KEYS)[number];
