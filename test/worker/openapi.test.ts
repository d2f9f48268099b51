// /openapi.json is the API reference (and /docs renders it): every operation, schema and property
// must say what it is, every error response must show the one envelope with a code of its status.
import { describe, expect, it } from "vitest";
import { ERROR_STATUS } from "../../src/errors";
import { api, expectJson } from "./harness";

interface SchemaObject {
  $ref?: string;
  description?: string;
  example?: unknown;
  examples?: unknown;
  enum?: unknown[];
  const?: unknown;
  type?: string | string[];
  properties?: Record<string, SchemaObject>;
  items?: SchemaObject;
  anyOf?: SchemaObject[];
  oneOf?: SchemaObject[];
  allOf?: SchemaObject[];
}

interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: Array<{ name: string; in: string; schema?: SchemaObject; description?: string }>;
  requestBody?: { content: Record<string, { schema: SchemaObject }> };
  responses: Record<
    string,
    { description?: string; content?: Record<string, { schema?: SchemaObject; example?: unknown }> }
  >;
}

interface Document {
  info: { description?: string };
  servers?: Array<{ url: string }>;
  tags?: Array<{ name: string; description?: string }>;
  paths: Record<string, Record<string, Operation>>;
  webhooks?: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, SchemaObject>;
    securitySchemes: Record<string, Record<string, unknown>>;
  };
}

const document = async () => expectJson<Document>(await api("/openapi.json"), 200);

function operations(doc: Document): Array<[string, Operation]> {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]): [string, Operation] => [`${method.toUpperCase()} ${path}`, op]),
  );
}

/** A property says what it is: a description, an example, an enum or const, or a described schema it refers to. */
function explained(schema: SchemaObject): boolean {
  if (
    schema.description ||
    schema.example !== undefined ||
    schema.examples ||
    schema.enum ||
    schema.const !== undefined
  )
    return true;
  if (schema.$ref) return true;
  const branches = schema.anyOf ?? schema.oneOf ?? schema.allOf;
  if (branches) return branches.some(explained);
  if (schema.items) return explained(schema.items);
  return false;
}

describe("/openapi.json", () => {
  it("names both security schemes and uses one on every /v1 operation", async () => {
    const doc = await document();
    expect(doc.components.securitySchemes.ApiKey).toMatchObject({ type: "http", scheme: "bearer" });
    expect(doc.components.securitySchemes.AdminToken).toMatchObject({ type: "http", scheme: "bearer" });
    for (const [name, op] of operations(doc)) {
      if (!name.includes(" /v1/")) continue;
      expect(op.security, name).toBeDefined();
      for (const requirement of op.security ?? []) {
        for (const scheme of Object.keys(requirement as object)) {
          expect(["ApiKey", "AdminToken"], `${name} names ${scheme}`).toContain(scheme);
        }
      }
    }
  });

  it("describes and tags every operation, with examples for every path parameter", async () => {
    const doc = await document();
    expect(doc.info.description).toContain("Authorization: Bearer");
    expect(doc.servers?.[0]?.url).toBe("https://relay.test");
    const tags = new Set(doc.tags?.map((t) => t.name));
    expect(operations(doc).length).toBeGreaterThanOrEqual(24);
    for (const [name, op] of operations(doc)) {
      expect(op.summary, `${name} summary`).toBeTruthy();
      expect(op.description, `${name} description`).toBeTruthy();
      expect(op.tags?.length, `${name} tags`).toBe(1);
      expect(tags.has(op.tags?.[0] ?? ""), `${name} tag is declared`).toBe(true);
      for (const parameter of op.parameters ?? []) {
        if (parameter.in === "path") {
          expect(parameter.schema?.example, `${name} ${parameter.name} example`).toBeDefined();
        }
        expect(
          parameter.description ?? parameter.schema?.description,
          `${name} ${parameter.name}`,
        ).toBeTruthy();
      }
    }
  });

  it("documents the error envelope on every error response, with an example code of that status", async () => {
    const doc = await document();
    expect(doc.components.schemas.Error?.description).toBeTruthy();
    for (const [name, op] of operations(doc)) {
      if (name.includes(" /v1/")) {
        expect(Object.keys(op.responses), `${name} 401`).toContain("401");
        expect(Object.keys(op.responses), `${name} 500`).toContain("500");
      }
      for (const [status, response] of Object.entries(op.responses)) {
        expect(response.description, `${name} ${status}`).toBeTruthy();
        if (Number(status) < 400) continue;
        const json = response.content?.["application/json"];
        expect(json?.schema?.$ref, `${name} ${status}`).toBe("#/components/schemas/Error");
        const example = json?.example as { error: { code: keyof typeof ERROR_STATUS; request_id: string } };
        expect(ERROR_STATUS[example.error.code], `${name} ${status} example code`).toBe(Number(status));
        expect(example.error.request_id).toMatch(/^req_/);
      }
    }
  });

  it("gives every success response and request body a schema", async () => {
    const doc = await document();
    for (const [name, op] of operations(doc)) {
      for (const [status, response] of Object.entries(op.responses)) {
        // A redirect has no body: its Location is the answer.
        if (Number(status) >= 400 || status === "204" || status.startsWith("3")) continue;
        const content = Object.values(response.content ?? {});
        expect(content.length, `${name} ${status} content`).toBeGreaterThan(0);
        expect(content[0]?.schema, `${name} ${status} schema`).toBeDefined();
      }
      for (const media of Object.values(op.requestBody?.content ?? {})) {
        expect(media.schema.$ref, `${name} request body is a named schema`).toMatch(
          /^#\/components\/schemas\//,
        );
      }
    }
    const progress = doc.paths["/v1/runs/{id}/progress"]?.get;
    expect(Object.keys(progress?.responses["200"]?.content ?? {})).toEqual(["text/event-stream"]);
    expect(progress?.description).toContain("570 seconds");
    expect(doc.paths["/webhooks/parallel"]?.post?.parameters?.map((p) => p.name)).toEqual([
      "webhook-id",
      "webhook-timestamp",
      "webhook-signature",
    ]);
  });

  it("documents the callback taskrelay sends as a webhook", async () => {
    const doc = await document();
    const callback = doc.webhooks?.runResult?.post;
    expect(callback?.requestBody?.content["application/json"]?.schema.$ref).toBe(
      "#/components/schemas/CallbackEvent",
    );
    expect(doc.components.schemas.CallbackEvent?.properties?.data).toBeDefined();
  });

  it("explains every schema and every property, and gives every request schema an example", async () => {
    const doc = await document();
    const unexplained: string[] = [];
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      for (const [property, value] of Object.entries(schema.properties ?? {})) {
        if (!explained(value)) unexplained.push(`${name}.${property}`);
      }
      if (!schema.description && schema.example === undefined && !schema.properties) unexplained.push(name);
    }
    expect(unexplained).toEqual([]);
    const bodies = new Set(
      operations(doc).flatMap(([, op]) =>
        Object.values(op.requestBody?.content ?? {}).map((m) => m.schema.$ref?.split("/").pop() ?? ""),
      ),
    );
    for (const name of bodies) {
      const schema = doc.components.schemas[name];
      const everyProperty = Object.values(schema?.properties ?? {}).every(
        (p) => p.example !== undefined || p.$ref || p.enum || p.type === "boolean" || p.anyOf,
      );
      expect(schema?.example !== undefined || everyProperty, `${name} has an example`).toBe(true);
    }
  });

  it("says what the routes accept: callback null, no auto input schema, integer wait and limit", async () => {
    const doc = await document();
    const nullable = (schema: SchemaObject | undefined) =>
      Array.isArray(schema?.type)
        ? schema.type.includes("null")
        : !!schema?.anyOf?.some((s) => s.type === "null");
    expect(nullable(doc.components.schemas.RunRequest?.properties?.callback)).toBe(true);
    expect(nullable(doc.components.schemas.ScheduleCreate?.properties?.callback)).toBe(true);

    const inputSchema = doc.components.schemas.TaskSpec?.properties?.input_schema;
    const definition = inputSchema?.anyOf?.find((s) => s.type === "object");
    expect(definition?.properties?.type?.enum).toEqual(["json", "text"]);
    expect(inputSchema?.description).toContain("no auto input schema");
    const outputTypes = doc.components.schemas.TaskSpec?.properties?.output_schema?.anyOf?.find(
      (s) => s.type === "object",
    )?.properties?.type?.enum;
    expect(outputTypes).toEqual(["json", "text", "auto"]);

    const param = (path: string, name: string) =>
      doc.paths[path]?.get?.parameters?.find((p) => p.name === name)?.schema as
        | (SchemaObject & { minimum?: number; maximum?: number; default?: number })
        | undefined;
    expect(param("/v1/runs/{id}/result", "wait")).toMatchObject({
      type: "integer",
      minimum: 0,
      maximum: 60,
      default: 0,
    });
    for (const path of ["/v1/runs", "/v1/schedules", "/v1/deliveries"]) {
      expect(param(path, "limit"), path).toMatchObject({
        type: "integer",
        minimum: 1,
        maximum: 100,
        default: 20,
      });
    }
  });
});
