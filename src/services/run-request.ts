// The checks a run request passes before it is stored, beyond its JSON shape: Parallel's limits
// (so no money is spent on a run Parallel would refuse) and the callback URL policy.
import type { Config } from "../env";
import type { ErrorDetail } from "../errors";
import {
  checkMetadata,
  checkProcessor,
  checkSourcePolicy,
  checkTaskSpec,
} from "../parallel/task-spec-checks";
import type { RunRequest } from "../schemas/runs";
import { callbackUrlProblem } from "./callback-url";

type Checked = Pick<RunRequest, "processor" | "input" | "task_spec" | "metadata" | "source_policy"> & {
  callback?: { url: string } | undefined;
};

/** Every problem with the request, each with its JSON path under `prefix` (e.g. "template."). */
export function checkRunRequest(request: Checked, config: Config, prefix = ""): ErrorDetail[] {
  const problems = [
    ...checkProcessor(request.processor, "processor"),
    ...checkTaskSpec(request.task_spec, request.input, "task_spec"),
    ...checkSourcePolicy(request.source_policy, "source_policy"),
    ...checkMetadata(request.metadata, "metadata"),
  ];
  if (request.callback) problems.push(...checkCallbackUrl(request.callback.url, config, "callback.url"));
  return problems.map((p) => (p.path ? { ...p, path: `${prefix}${p.path}` } : p));
}

export function checkCallbackUrl(url: string, config: Config, path: string): ErrorDetail[] {
  const problem = callbackUrlProblem(url, { allowHttpCallbacks: config.ALLOW_HTTP_CALLBACKS });
  return problem ? [{ path, message: `the callback URL ${problem}` }] : [];
}
