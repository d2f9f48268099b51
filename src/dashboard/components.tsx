// The dashboard's page frame and small pieces. Hono JSX escapes every text and attribute value; no
// component here renders raw HTML, and links to URLs that came from data are http(s) only.
import { raw } from "hono/html";
import type { Child } from "hono/jsx";
import { FAVICON_PATH } from "../routes/docs";
import type { DashboardSession } from "../services/dashboard-sessions";
import { CLOCK_SCRIPT } from "./clock-script";
import { relativeTime, safeHttpUrl, utcTime } from "./format";
import { STYLE_PATH } from "./style";

export type Section = "overview" | "runs" | "schedules" | "deliveries" | "batches";

export interface PageProps {
  title: string;
  session?: DashboardSession | undefined;
  section?: Section | undefined;
  notice?: string | undefined;
  /** This response's CSP nonce: with it, the page's relative times keep counting (CLOCK_SCRIPT). */
  nonce?: string | undefined;
  children?: Child;
}

export function Page({ title, session, section, notice, nonce, children }: PageProps) {
  const link = (name: Section, label: string) => (
    <a
      href={name === "overview" ? "/dashboard" : `/dashboard/${name}`}
      aria-current={section === name ? "page" : undefined}
    >
      {label}
    </a>
  );
  return (
    <>
      {raw("<!DOCTYPE html>")}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title>{`${title} · taskrelay`}</title>
          <link rel="stylesheet" href={STYLE_PATH} />
          <link rel="icon" href={FAVICON_PATH} />
        </head>
        <body>
          <header class="top">
            <a class="brand" href="/dashboard">
              taskrelay
            </a>
            {session ? (
              <nav aria-label="Dashboard">
                {link("overview", "Overview")}
                {link("runs", "Runs")}
                {link("schedules", "Schedules")}
                {link("batches", "Batches")}
                {link("deliveries", "Deliveries")}
                <a href="/docs">API</a>
              </nav>
            ) : (
              <nav aria-label="Dashboard">
                <a href="/docs">API reference</a>
              </nav>
            )}
            {session ? (
              <>
                <span class="who">
                  Signed in as <span data-who>{session.label}</span>
                </span>
                <form method="post" action="/dashboard/sign-out">
                  <CsrfField session={session} />
                  <button type="submit">Sign out</button>
                </form>
              </>
            ) : null}
          </header>
          <main>
            {notice ? (
              <p class="notice" role="status">
                {notice}
              </p>
            ) : null}
            {session?.budgetNotice ? (
              <p class="notice" role="status" data-budget-notice>
                {session.budgetNotice}
              </p>
            ) : null}
            {children}
          </main>
          {nonce ? <script nonce={nonce} dangerouslySetInnerHTML={{ __html: CLOCK_SCRIPT }} /> : null}
        </body>
      </html>
    </>
  );
}

export function CsrfField({ session }: { session: DashboardSession }) {
  return <input type="hidden" name="csrf" value={session.csrfToken} />;
}

export function Status({ status, live, label }: { status: string; live?: boolean; label?: string }) {
  return (
    <span class={`badge s-${status}`} data-run-status={live ? status : undefined}>
      {label ?? status}
    </span>
  );
}

/** A moment as "3 min ago", with the exact UTC time on hover and in the markup; kept current by CLOCK_SCRIPT. */
export function When({ at, now }: { at: string | null | undefined; now: Date }) {
  if (!at) return <span class="empty">—</span>;
  return (
    <time datetime={at} title={utcTime(at)} data-relative>
      {relativeTime(at, now)}
    </time>
  );
}

/** A link to a schedule, by its name; a deleted schedule (its runs are kept) shows its id, unlinked. */
export function ScheduleLink({ id, names }: { id: string; names: Map<string, string> }) {
  const name = names.get(id);
  if (name === undefined) {
    return (
      <span class="sub">
        <code>{id}</code> (deleted)
      </span>
    );
  }
  return (
    <a href={`/dashboard/schedules/${id}`} data-schedule-link={id}>
      {name}
    </a>
  );
}

/** A link to an external URL from data: only http(s), never followed with our origin or a window handle. */
export function ExternalLink({ href, children }: { href: unknown; children?: Child }) {
  const url = safeHttpUrl(href);
  if (!url) return <span class="mono">{typeof href === "string" ? href : ""}</span>;
  return (
    <a href={url} rel="noopener noreferrer" target="_blank">
      {children ?? url}
    </a>
  );
}

/** Older/newest links of a cursor-paginated list; `params` are the list's other query parameters. */
export function Pager({
  base,
  params,
  cursor,
  nextCursor,
}: {
  base: string;
  params: Record<string, string | undefined>;
  cursor: string | undefined;
  nextCursor: string | null;
}) {
  const href = (next?: string) => {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) if (value) query.set(name, value);
    if (next) query.set("cursor", next);
    const text = query.toString();
    return text ? `${base}?${text}` : base;
  };
  if (!cursor && !nextCursor) return null;
  return (
    <nav class="pager" aria-label="Pages">
      {cursor ? <a href={href()}>← Newest</a> : null}
      {nextCursor ? (
        <a href={href(nextCursor)} rel="next">
          Older →
        </a>
      ) : null}
    </nav>
  );
}

const MAX_TREE_DEPTH = 12;

/** Any JSON value as a nested, readable tree (objects and arrays fold open by default). */
export function JsonTree({ value }: { value: unknown }) {
  return (
    <ul class="tree">
      <li>
        <JsonNode value={value} depth={0} />
      </li>
    </ul>
  );
}

function JsonNode({ value, depth }: { value: unknown; depth: number }): ReturnType<typeof JsonTree> {
  if (value === null || value === undefined) return <span class="null">null</span>;
  if (typeof value === "string") return <span class="str">{value}</span>;
  if (typeof value === "number") return <span class="num">{String(value)}</span>;
  if (typeof value === "boolean") return <span class="bool">{String(value)}</span>;
  if (depth >= MAX_TREE_DEPTH) return <code>{JSON.stringify(value)}</code>;
  const entries: Array<[string, unknown]> = Array.isArray(value)
    ? value.map((item, index) => [String(index), item])
    : Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return <span class="null">{Array.isArray(value) ? "[ ]" : "{ }"}</span>;
  const summary = Array.isArray(value)
    ? `${entries.length} item${entries.length === 1 ? "" : "s"}`
    : `${entries.length} field${entries.length === 1 ? "" : "s"}`;
  return (
    <details open>
      <summary>{summary}</summary>
      <ul>
        {entries.map(([key, item]) => (
          <li>
            <span class="k">{key}</span>: <JsonNode value={item} depth={depth + 1} />
          </li>
        ))}
      </ul>
    </details>
  );
}

/** Text as text, anything else as a tree. */
export function ValueView({ value }: { value: unknown }) {
  if (typeof value === "string") return <div class="text-output">{value}</div>;
  return <JsonTree value={value} />;
}
