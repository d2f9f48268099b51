import { createRoute } from "@hono/zod-openapi";
import type { App } from "../app";
import { requireApiKey } from "../middleware/auth";
import { validationHook } from "../middleware/validation";
import { BatchInputsRequestSchema, BatchSchema } from "../schemas/batches";
import { API_KEY_SECURITY, errors } from "../schemas/common";
import { addBatchInputs } from "../services/batches";
import { BatchIdParam } from "./batches-get";

export const addBatchInputsRoute = createRoute({
  method: "post",
  path: "/v1/batches/{id}/inputs",
  summary: "Add inputs to an open batch",
  description:
    "Up to 10,000 inputs a request, 100,000 in a batch, while it is open (created with `open: true`, not yet " +
    "closed). Checked as POST /v1/batches checks them (`index` is the position in this request); they are " +
    "submitted as they come, and numbered on from the batch's last input. 409 once the batch is closed or cancelled.",
  security: API_KEY_SECURITY,
  middleware: [requireApiKey()] as const,
  request: {
    params: BatchIdParam,
    body: { required: true, content: { "application/json": { schema: BatchInputsRequestSchema } } },
  },
  responses: {
    202: { description: "Added; being submitted.", content: { "application/json": { schema: BatchSchema } } },
    400: errors[400],
    401: errors[401],
    404: errors[404],
    402: errors[402],
    409: errors[409],
    413: errors[413],
    415: errors[415],
    422: errors[422],
    500: errors[500],
  },
});

export function registerBatchInputs(app: App) {
  app.openapi(
    addBatchInputsRoute,
    async (c) => {
      const body = c.req.valid("json");
      const batch = await addBatchInputs(c.var.services, {
        apiKeyId: c.var.apiKey.id,
        id: c.req.valid("param").id,
        inputs: body.inputs,
        skipInvalid: body.skip_invalid === true,
        queue: c.env.WORK_QUEUE,
      });
      return c.json(batch, 202);
    },
    validationHook(),
  );
}
