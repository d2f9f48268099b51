import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../app";
import { describeError } from "../log";
import { requireApiKey } from "../middleware/auth";
import { API_KEY_SECURITY, errors, integerQuery } from "../schemas/common";
import { RunResultSchema } from "../schemas/runs";
import { byteLength, readOutputBody, wrapStream } from "../services/outputs";
import { toRunView } from "../services/run-view";
import { getRunResult } from "../services/runs";
import { RunIdParam } from "./runs-get";

export const getRunResultRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}/result",
  summary: "Get a run's result",
  description:
    "200 with the output once the run completed and its result is stored; 409 `result_not_ready` before that, " +
    "409 `run_failed` for a run that ended without a result. `wait` holds the request up to N seconds for the result. " +
    "The whole output, whatever its size: an output over 256 KiB is streamed from storage (with its Content-Length); " +
    "this is the `output_url` a callback carries instead of such an output.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    params: RunIdParam,
    query: z.object({
      wait: integerQuery({
        min: 0,
        max: 60,
        default: 0,
        description: "Seconds to wait for the result, 0 to 60.",
        example: 30,
      }),
    }),
  },
  responses: {
    200: {
      description: "The run and its output.",
      content: { "application/json": { schema: RunResultSchema } },
    },
    401: errors[401],
    404: errors[404],
    409: errors[409],
    422: errors[422],
    500: errors[500],
  },
});

export function registerRunResult(app: App) {
  app.openapi(getRunResultRoute, async (c) => {
    const { run } = await getRunResult(
      c.var.services,
      c.var.apiKey.id,
      c.req.valid("param").id,
      c.req.valid("query").wait,
    );
    const view = toRunView(run);
    if (run.output) {
      return c.json({ run: view, output: run.output as z.infer<typeof RunResultSchema>["output"] }, 200);
    }
    // A large output (in R2): the same {run, output} JSON, the output streamed into it from the bucket,
    // so a 50 MB result never sits in the Worker's memory.
    const stored = await readOutputBody(c.var.services.outputs, run);
    if (!stored) throw new Error(`run ${run.id}: its output ${run.output_key} is missing from R2`);
    const prefix = `{"run":${JSON.stringify(view)},"output":`;
    const suffix = "}";
    // FixedLengthStream: the response is sent with its Content-Length although its body is a stream.
    const length = byteLength(prefix) + stored.bytes + byteLength(suffix);
    const sized = new FixedLengthStream(length);
    // A failure half-way cuts the response short (the client sees fewer bytes than announced).
    wrapStream(prefix, stored.body, suffix)
      .pipeTo(sized.writable)
      .catch((error: unknown) =>
        c.var.services.log.error("run.result_stream_failed", { run_id: run.id, error: describeError(error) }),
      );
    const streamed = c.body(sized.readable, 200, {
      "content-type": "application/json",
      "content-length": String(length),
    });
    // The same RunResult JSON, written by hand: zod-openapi types only c.json() bodies as the schema.
    return streamed as never;
  });
}
