// The one place that turns zod's issues into words a user can act on: what was expected and what
// came, never zod's internals ("expected number, received NaN"). `describeIssue` is installed as
// zod's global error map, so every schema (requests, query strings, the configuration) speaks the
// same way; a schema with its own `error` (a hint for a common mistake) still takes precedence.
// Messages never repeat a value, only its kind: the same map reads settings that may be secrets.
import { z } from "zod";
import type { ErrorDetail } from "../errors";

type Issue = z.core.$ZodIssue;
type RawIssue = z.core.$ZodRawIssue;

/** What a zod type name means in the API's words. */
const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  object: "a JSON object",
  record: "a JSON object",
  array: "an array",
  null: "null",
};

/** The kind of a value, as a JSON user would name it. */
export function kindOf(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "number") return Number.isNaN(value) ? "not a number" : "a number";
  if (typeof value === "string") return value === "" ? "an empty string" : "a string";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "object") return "a JSON object";
  return typeof value;
}

const expected = (name: string) => EXPECTED[name] ?? name;

const orList = (items: string[]) =>
  items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`;

/** The type a union branch wanted, if the value did not have it (zod goes on checking after that). */
function typeRefused(branch: readonly Issue[]): string | undefined {
  const refusal = branch.find((issue) => issue.code === "invalid_type" && issue.path.length === 0);
  return refusal?.code === "invalid_type" ? refusal.expected : undefined;
}

/** The types each branch of a union wanted, when every branch refused the value's type outright. */
function unionExpectations(errors: readonly (readonly Issue[])[]): string[] | null {
  const wanted: string[] = [];
  for (const branch of errors) {
    const type = typeRefused(branch);
    if (type === undefined) return null;
    if (!wanted.includes(expected(type))) wanted.push(expected(type));
  }
  return wanted;
}

function mustBe(what: string, input: unknown): string {
  return input === undefined ? `is required: ${what}` : `must be ${what}, got ${kindOf(input)}`;
}

function sizeLimit(origin: string, bound: number | bigint, atLeast: boolean): string {
  const n = Number(bound);
  if (origin === "string") {
    if (atLeast && n === 1) return "must not be empty";
    return `must have ${atLeast ? "at least" : "at most"} ${n} character${n === 1 ? "" : "s"}`;
  }
  if (origin === "array" || origin === "set") {
    if (atLeast && n === 1) return "must not be empty";
    return `must have ${atLeast ? "at least" : "at most"} ${n} item${n === 1 ? "" : "s"}`;
  }
  return `must be ${atLeast ? "at least" : "at most"} ${n}`;
}

/** The message of one issue, without its path (the path is added where the issue is reported). */
export function describeIssue(issue: RawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      return mustBe(expected(issue.expected), issue.input);
    case "invalid_union": {
      const wanted = unionExpectations(issue.errors);
      return wanted ? mustBe(orList(wanted), issue.input) : "does not match any of the accepted forms";
    }
    case "too_small":
      return sizeLimit(issue.origin, issue.minimum, true);
    case "too_big":
      return sizeLimit(issue.origin, issue.maximum, false);
    case "invalid_value":
      return issue.values.length === 1
        ? `must be ${JSON.stringify(issue.values[0])}`
        : `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_format":
      return issue.format === "url" ? "must be an absolute URL" : `must be a valid ${issue.format}`;
    case "unrecognized_keys":
      return `unknown field${issue.keys.length === 1 ? "" : "s"} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
    case "not_multiple_of":
      return `must be a multiple of ${String(issue.divisor)}`;
    case "invalid_key":
      return "has a key that is not allowed";
    case "invalid_element":
      return "has an item that is not allowed";
    default:
      return undefined;
  }
}

z.config({ customError: describeIssue });

const pathOf = (path: readonly PropertyKey[]) => path.map(String).join(".");

/** A detail whose message names its field, so each reads on its own: "input must be …". */
function detail(path: string, message: string): ErrorDetail {
  return { path, message: `${path || "the body"} ${message}` };
}

/**
 * zod's issues as error details, each at its JSON path. A union whose value had the type of one of
 * its branches reports that branch's problems (an object that is almost a JSON schema definition is
 * told what is wrong inside it, not "no branch matched"); unknown fields get one detail each.
 */
export function issuesToDetails(
  issues: readonly Issue[],
  prefix: readonly PropertyKey[] = [],
): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === "invalid_union" && issue.errors.length > 0) {
      const closest = closestBranch(issue.errors);
      if (closest) {
        details.push(...issuesToDetails(closest, path));
        continue;
      }
    }
    if (issue.code === "unrecognized_keys") {
      // A schema's own message is a hint about the whole object; zod's default names each key.
      if (issue.message !== describeIssue(issue as RawIssue))
        details.push(detail(pathOf(path), issue.message));
      else for (const key of issue.keys) details.push(detail(pathOf([...path, key]), "is not a field here"));
      continue;
    }
    details.push(detail(pathOf(path), issue.message));
  }
  return details;
}

/** The branch whose type the value had (its issues are inside the value), the fewest issues first. */
function closestBranch(errors: readonly (readonly Issue[])[]): readonly Issue[] | null {
  const typeMatched = errors.filter((branch) => typeRefused(branch) === undefined);
  if (typeMatched.length === 0) return null;
  return typeMatched.reduce((best, branch) => (branch.length < best.length ? branch : best));
}
