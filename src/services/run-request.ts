// The checks a run request passes before it is stored, beyond its JSON shape: Parallel's limits
// (so no money is spent on a run Parallel would refuse), the input against its input schema, and
// the callback URL policy. They take any JSON value, so a request that fails its zod schema is
// checked too and one 422 lists every problem.
import type { Config } from "../env";
import type { ErrorDetail } from "../errors";
import {
  checkMetadata,
  checkProcessor,
  checkSourcePolicy,
  checkTaskSpec,
} from "../parallel/task-spec-checks";
import { callbackUrlProblem } from "./callback-url";

const fieldsOf = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};

/** Every problem with the request, each with its JSON path under `prefix` (e.g. "template."). */
export function checkRunRequest(request: unknown, config: Config, prefix = ""): ErrorDetail[] {
  const fields = fieldsOf(request);
  const problems = [
    ...checkProcessor(fields.processor, "processor"),
    ...checkTaskSpec(fields.task_spec, fields.input, "task_spec"),
    ...checkSourcePolicy(fields.source_policy, "source_policy"),
    ...checkMetadata(fields.metadata, "metadata"),
    ...checkCallback(fields.callback, config, "callback"),
  ];
  // A message that names its own path ("input.year must be …") names the prefixed one.
  return problems.map((p) =>
    p.path
      ? {
          ...p,
          path: `${prefix}${p.path}`,
          message: p.message.startsWith(p.path) ? `${prefix}${p.message}` : p.message,
        }
      : p,
  );
}

/** The callback's URL against the policy, for a callback that is an object with a string url. */
export function checkCallback(callback: unknown, config: Config, path: string): ErrorDetail[] {
  const url = fieldsOf(callback).url;
  return typeof url === "string" ? checkCallbackUrl(url, config, `${path}.url`) : [];
}

export function checkCallbackUrl(url: string, config: Config, path: string): ErrorDetail[] {
  const problem = callbackUrlProblem(url, { allowHttpCallbacks: config.ALLOW_HTTP_CALLBACKS });
  return problem ? [{ path, message: `the callback URL ${problem}` }] : [];
}
