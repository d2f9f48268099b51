// What a route does with a request that fails its zod schema: one 422 with every problem. A route
// whose body has checks beyond its shape (Parallel's limits, the callback URL policy) passes them
// here, so they run on the raw body too and a user learns every problem at once, not stage by stage.
import type { Context } from "hono";
import type { ValidationTargets } from "hono/types";
import type { ZodError } from "zod";
import type { AppEnv } from "../app-env";
import { type ErrorDetail, validationFailed } from "../errors";
import { issuesToDetails } from "../schemas/issues";

/** Problems with a body that did not parse; each check must accept any JSON value. */
export type BodyChecks = (body: unknown, c: Context<AppEnv>) => ErrorDetail[];

type ValidationResult<T> = { target: keyof ValidationTargets } & (
  | { success: true; data: T }
  | { success: false; error: ZodError }
);

export function validationHook(bodyChecks?: BodyChecks) {
  // Generic, so a route's handler keeps the types its schemas give it.
  return <T, P extends string>(result: ValidationResult<T>, c: Context<AppEnv, P>): undefined => {
    if (result.success) return undefined;
    const details = issuesToDetails(result.error.issues);
    if (bodyChecks && result.target === "json") {
      // @hono/zod-validator hands the hook the value it parsed, valid or not (its type omits it).
      const body = (result as { data?: unknown }).data;
      details.push(...notYetReported(bodyChecks(body, c as Context<AppEnv>), details));
    }
    throw validationFailed(details);
  };
}

/** The checks' problems at paths zod did not already report (or under them): one problem, one detail. */
function notYetReported(problems: ErrorDetail[], reported: ErrorDetail[]): ErrorDetail[] {
  const paths = reported.map((d) => d.path ?? "");
  return problems.filter((p) => {
    const path = p.path ?? "";
    return !paths.some((seen) => path === seen || path.startsWith(`${seen}.`));
  });
}
