// The dashboard at /dashboard: server-rendered pages over the same services as the API. Every page
// and form checks the session; every form carries the session's CSRF token. Errors render as pages.
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { z } from "zod";
import type { App } from "../app";
import { DELIVERY_STATUSES } from "../db/deliveries";
import { RUN_STATUSES } from "../db/runs";
import { ApiError } from "../errors";
import { describeError } from "../log";
import { streamRunProgress } from "../routes/runs-progress";
import { EXPORT_FORMATS, exportBatchResults } from "../services/batch-export";
import { listBatchOverviews } from "../services/batch-overview";
import { SESSION_TTL_MS, signIn, signOut } from "../services/dashboard-sessions";
import { readOutputBody } from "../services/outputs";
import { getOverview, OVERVIEW_RANGES, type OverviewRange } from "../services/overview";
import {
  getRunDetailFor,
  getRunFor,
  getScheduleDetailFor,
  keyNames,
  listDeliveriesFor,
  listRunsFor,
  listSchedulesFor,
  retryDeliveryFor,
  scheduleNamesFor,
  setScheduleEnabledFor,
  triggerScheduleFor,
} from "../services/viewer";
import { dashboardPath } from "./format";
import { BatchesPage } from "./pages/batches";
import { DeliveriesPage, type DeliveryList } from "./pages/deliveries";
import { ErrorPage } from "./pages/error";
import { OverviewPage } from "./pages/overview";
import { RunPage } from "./pages/run";
import { RunsPage } from "./pages/runs";
import { SchedulePage, SchedulesPage } from "./pages/schedules";
import { SignInPage } from "./pages/sign-in";
import {
  clearSessionCookie,
  DASHBOARD_PATH,
  type DashboardEnv,
  dashboardHeaders,
  issueSignInToken,
  requireCsrf,
  requireSession,
  SIGN_IN_PATH,
  sameOrigin,
  sessionCookie,
  setSessionCookie,
  signInTokenMatches,
} from "./session";
import { DASHBOARD_CSS, STYLE_VERSION } from "./style";

const PAGE_SIZE = 25;
const OVERVIEW_SIZE = 10;

/** Fixed messages for `?notice=`: the query names one, it never carries text onto the page. */
const NOTICES: Record<string, string> = {
  retried: "Delivery retried: an attempt is under way.",
  paused: "Schedule paused.",
  resumed: "Schedule resumed: the next run is computed from now.",
  triggered: "Schedule run started.",
  signed_out: "Signed out.",
  cancel_unavailable:
    "Cancelling a batch is not wired up here yet: it comes with the batch API's POST /v1/batches/:id/cancel.",
};

const notice = (value: string | undefined) => (value ? NOTICES[value] : undefined);

const RunQuery = z.object({
  status: z.enum(RUN_STATUSES).optional().catch(undefined),
  cursor: z.string().max(200).optional(),
  notice: z.string().optional(),
});
const DeliveryQuery = z.object({
  status: z.enum(DELIVERY_STATUSES).optional().catch(undefined),
  cursor: z.string().max(200).optional(),
  notice: z.string().optional(),
});
const OverviewQuery = z.object({
  range: z
    .enum(Object.keys(OVERVIEW_RANGES) as [OverviewRange, ...OverviewRange[]])
    .optional()
    .catch(undefined),
  key: z
    .string()
    .regex(/^key_[0-9A-Za-z]{1,64}$/)
    .optional()
    .catch(undefined),
});
const PageQuery = z.object({ cursor: z.string().max(200).optional(), notice: z.string().optional() });

/** A tidy query: an unknown status is ignored rather than refused, a bad cursor is a 422 page. */
function query<T extends z.ZodType>(schema: T, raw: Record<string, string>): z.infer<T> {
  const parsed = schema.safeParse(raw);
  return parsed.success ? parsed.data : ({} as z.infer<T>);
}

export function createDashboard() {
  const dashboard = new Hono<DashboardEnv>();
  dashboard.use("*", dashboardHeaders());

  dashboard.get("/style.css", (c) => {
    c.header("cache-control", "public, max-age=86400, immutable");
    c.header("content-type", "text/css; charset=utf-8");
    c.header("etag", `"${STYLE_VERSION}"`);
    return c.body(DASHBOARD_CSS);
  });

  dashboard.get("/sign-in", (c) => {
    return c.html(<SignInPage formToken={issueSignInToken(c)} notice={notice(c.req.query("notice"))} />);
  });

  dashboard.post("/sign-in", async (c) => {
    const form = await c.req.parseBody();
    if (!sameOrigin(c) || !signInTokenMatches(c, form.form_token)) {
      throw new ApiError(
        "forbidden",
        "The sign-in form was not sent from this site. Reload it and try again.",
      );
    }
    try {
      const { cookieValue } = await signIn(
        c.var.services,
        typeof form.credential === "string" ? form.credential : "",
      );
      setSessionCookie(c, cookieValue, SESSION_TTL_MS / 1000);
      return c.redirect(DASHBOARD_PATH, 303);
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "unauthorized") throw error;
      return c.html(<SignInPage formToken={issueSignInToken(c)} error={error.message} />, 401);
    }
  });

  dashboard.use("*", requireSession());

  dashboard.post("/sign-out", requireCsrf(), async (c) => {
    await signOut(c.var.services, sessionCookie(c));
    clearSessionCookie(c);
    return c.redirect(`${SIGN_IN_PATH}?notice=signed_out`, 303);
  });

  dashboard.get("/", async (c) => {
    const ctx = c.var.services;
    const viewer = c.var.session.viewer;
    const q = query(OverviewQuery, c.req.query());
    // A key sees its own figures whatever `key` says; the admin picks one key or every key.
    const keyId = viewer.kind === "admin" && q.key ? q.key : undefined;
    const [overview, names] = await Promise.all([
      getOverview(ctx, viewer, { range: q.range ?? "24h", keyId }),
      keyNames(ctx, viewer),
    ]);
    return c.html(
      <OverviewPage
        session={c.var.session}
        overview={overview}
        keyId={keyId}
        keyNames={names}
        now={ctx.now()}
        nonce={c.var.nonce}
      />,
    );
  });

  dashboard.get("/runs", async (c) => {
    const ctx = c.var.services;
    const q = query(RunQuery, c.req.query());
    const viewer = c.var.session.viewer;
    const [[page, scheduleNames], names] = await Promise.all([
      listRunsFor(ctx, viewer, { status: q.status, cursor: q.cursor, limit: PAGE_SIZE }).then(
        async (page) => [page, await scheduleNamesFor(ctx, viewer, page.runs)] as const,
      ),
      keyNames(ctx, viewer),
    ]);
    return c.html(
      <RunsPage
        session={c.var.session}
        runs={page.runs}
        status={q.status}
        cursor={q.cursor}
        nextCursor={page.nextCursor}
        keyNames={names}
        scheduleNames={scheduleNames}
        now={ctx.now()}
        nonce={c.var.nonce}
        notice={notice(q.notice)}
      />,
    );
  });

  dashboard.get("/runs/:id", async (c) => {
    const ctx = c.var.services;
    const viewer = c.var.session.viewer;
    const [detail, names] = await Promise.all([
      getRunDetailFor(ctx, viewer, c.req.param("id")),
      keyNames(ctx, viewer),
    ]);
    return c.html(
      <RunPage
        {...detail}
        session={c.var.session}
        keyName={names.get(detail.run.api_key_id) ?? null}
        nonce={c.var.nonce}
        now={ctx.now()}
        notice={notice(c.req.query("notice"))}
      />,
    );
  });

  // The whole output as a download, streamed (an output in R2 can be tens of MB).
  dashboard.get("/runs/:id/output", async (c) => {
    const ctx = c.var.services;
    const run = await getRunFor(ctx, c.var.session.viewer, c.req.param("id"));
    const stored = run.result_stored_at ? await readOutputBody(ctx.outputs, run) : null;
    if (!stored) throw new ApiError("not_found", `Run ${run.id} has no stored output.`);
    return c.body(stored.body, 200, {
      "content-type": "application/json",
      "content-length": String(stored.bytes),
      "content-disposition": `attachment; filename="${run.id}-output.json"`,
    });
  });

  // The page's own progress stream: EventSource cannot send an Authorization header, so this one is
  // authenticated by the session cookie (SameSite=Strict: only this site's pages can open it).
  dashboard.get("/runs/:id/progress", async (c) => {
    const ctx = c.var.services;
    const run = await getRunFor(ctx, c.var.session.viewer, c.req.param("id"));
    return streamRunProgress(c, ctx, run);
  });

  dashboard.get("/schedules", async (c) => {
    const ctx = c.var.services;
    const q = query(PageQuery, c.req.query());
    const [page, names] = await Promise.all([
      listSchedulesFor(ctx, c.var.session.viewer, { cursor: q.cursor, limit: PAGE_SIZE }),
      keyNames(ctx, c.var.session.viewer),
    ]);
    return c.html(
      <SchedulesPage
        session={c.var.session}
        schedules={page.schedules}
        cursor={q.cursor}
        nextCursor={page.nextCursor}
        keyNames={names}
        now={ctx.now()}
        nonce={c.var.nonce}
        notice={notice(q.notice)}
      />,
    );
  });

  dashboard.get("/schedules/:id", async (c) => {
    const ctx = c.var.services;
    const viewer = c.var.session.viewer;
    const [{ schedule, runs, occurrences }, names] = await Promise.all([
      getScheduleDetailFor(ctx, viewer, c.req.param("id"), OVERVIEW_SIZE),
      keyNames(ctx, viewer),
    ]);
    return c.html(
      <SchedulePage
        session={c.var.session}
        schedule={schedule}
        runs={runs}
        occurrences={occurrences}
        nonce={c.var.nonce}
        keyName={names.get(schedule.api_key_id) ?? null}
        now={ctx.now()}
        notice={notice(c.req.query("notice"))}
      />,
    );
  });

  const withNotice = (path: string, name: string) => `${path}${path.includes("?") ? "&" : "?"}notice=${name}`;

  for (const [verb, enabled] of [
    ["pause", false],
    ["resume", true],
  ] as const) {
    dashboard.post(`/schedules/:id/${verb}`, requireCsrf(), async (c) => {
      const id = c.req.param("id");
      await setScheduleEnabledFor(c.var.services, c.var.session.viewer, id, enabled);
      const back = dashboardPath((await c.req.parseBody()).back, `${DASHBOARD_PATH}/schedules/${id}`);
      return c.redirect(withNotice(back, enabled ? "resumed" : "paused"), 303);
    });
  }

  dashboard.post("/schedules/:id/trigger", requireCsrf(), async (c) => {
    const run = await triggerScheduleFor(c.var.services, c.var.session.viewer, c.req.param("id"));
    return c.redirect(withNotice(`${DASHBOARD_PATH}/runs/${run.id}`, "triggered"), 303);
  });

  dashboard.get("/batches", async (c) => {
    const ctx = c.var.services;
    const q = query(PageQuery, c.req.query());
    const [page, names] = await Promise.all([
      listBatchOverviews(ctx, c.var.session.viewer, { cursor: q.cursor, limit: PAGE_SIZE }),
      keyNames(ctx, c.var.session.viewer),
    ]);
    return c.html(
      <BatchesPage
        session={c.var.session}
        batches={page.batches}
        cursor={q.cursor}
        nextCursor={page.nextCursor}
        keyNames={names}
        now={ctx.now()}
        nonce={c.var.nonce}
        notice={notice(q.notice)}
      />,
    );
  });

  // The same file as GET /v1/batches/:id/results, for the signed-in viewer (a link cannot send a bearer token).
  for (const format of EXPORT_FORMATS) {
    dashboard.get(`/batches/:id/results.${format}`, async (c) => {
      const exported = await exportBatchResults(
        c.var.services,
        c.var.session.viewer,
        c.req.param("id"),
        format,
      );
      return c.body(exported.body, 200, {
        "content-type": exported.contentType,
        "content-disposition": `attachment; filename="${exported.filename}"`,
      });
    });
  }

  // The form is in place; the cancel itself is the batch API's (POST /v1/batches/:id/cancel, i15-batches),
  // which this route calls once it lands. Until then it says so instead of pretending.
  dashboard.post("/batches/:id/cancel", requireCsrf(), async (c) => {
    return c.redirect(withNotice(`${DASHBOARD_PATH}/batches`, "cancel_unavailable"), 303);
  });

  dashboard.get("/deliveries", async (c) => {
    const ctx = c.var.services;
    const viewer = c.var.session.viewer;
    const q = query(DeliveryQuery, c.req.query());
    const titles = { dead: "Dead letters", pending: "Pending", succeeded: "Succeeded" } as const;
    const statuses = q.status ? [q.status] : (["dead", "pending", "succeeded"] as const);
    const [lists, names] = await Promise.all([
      Promise.all(
        statuses.map(async (status): Promise<DeliveryList> => {
          const page = await listDeliveriesFor(ctx, viewer, {
            status,
            cursor: q.status ? q.cursor : undefined,
            limit: q.status ? PAGE_SIZE : OVERVIEW_SIZE,
          });
          return { status, title: titles[status], deliveries: page.deliveries, nextCursor: page.nextCursor };
        }),
      ),
      keyNames(ctx, viewer),
    ]);
    return c.html(
      <DeliveriesPage
        session={c.var.session}
        lists={lists}
        only={q.status}
        cursor={q.cursor}
        keyNames={names}
        now={ctx.now()}
        nonce={c.var.nonce}
        notice={notice(q.notice)}
      />,
    );
  });

  dashboard.post("/deliveries/:id/retry", requireCsrf(), async (c) => {
    const delivery = await retryDeliveryFor(c.var.services, c.var.session.viewer, c.req.param("id"));
    const back = dashboardPath((await c.req.parseBody()).back, `${DASHBOARD_PATH}/runs/${delivery.run_id}`);
    return c.redirect(withNotice(back, "retried"), 303);
  });

  dashboard.all("*", () => {
    throw new ApiError("not_found", "There is no such page in the dashboard.");
  });

  dashboard.onError((error, c) => {
    const apiError =
      error instanceof ApiError
        ? error
        : error instanceof HTTPException && error.status === 413
          ? new ApiError("payload_too_large", "The form is too large.")
          : null;
    if (!apiError || apiError.status >= 500) {
      c.var.services?.log.error("dashboard.error", { path: c.req.path, error: describeError(error) });
    }
    const status = apiError && apiError.status < 500 ? apiError.status : 500;
    const message =
      apiError && apiError.status < 500
        ? apiError.message
        : "taskrelay failed to show this page; the request id finds it in the logs.";
    return c.html(
      <ErrorPage
        status={status}
        message={message}
        requestId={c.var.requestId ?? "unknown"}
        session={c.var.session}
      />,
      status as 401 | 403 | 404 | 409 | 413 | 422 | 500,
    );
  });

  return dashboard;
}

export function registerDashboard(app: App) {
  app.route(DASHBOARD_PATH, createDashboard());
}
