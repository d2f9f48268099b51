import type { Delivery } from "../../db/deliveries";
import type { DashboardSession } from "../../services/dashboard-sessions";
import { Page, Pager, Status, When } from "../components";
import { NextAttempt, RetryForm } from "./run";

export interface DeliveryList {
  status: "dead" | "pending" | "succeeded";
  title: string;
  deliveries: Delivery[];
  nextCursor: string | null;
}

function DeliveryTable(props: {
  list: DeliveryList;
  session: DashboardSession;
  keyNames: Map<string, string>;
  now: Date;
  back: string;
}) {
  const { list, session, now } = props;
  const admin = session.viewer.kind === "admin";
  if (list.deliveries.length === 0) return <p class="empty">None.</p>;
  return (
    <table class={`list deliveries deliveries-${list.status}`}>
      <thead>
        <tr>
          <th>Delivery</th>
          <th>Status</th>
          <th>Last attempt</th>
          <th>Last error</th>
          {admin ? <th>Key</th> : null}
          <th>Action</th>
        </tr>
      </thead>
      <tbody>
        {list.deliveries.map((d) => (
          <tr data-delivery-id={d.id}>
            <td data-label="Delivery">
              <code>{d.id}</code>
              <div class="sub">
                {d.event} of <a href={`/dashboard/runs/${d.run_id}`}>{d.run_id}</a>
              </div>
              <div class="sub">
                to <code>{d.url}</code>
              </div>
            </td>
            <td data-label="Status">
              <Status status={d.status} />
              <div class="sub">{`series ${d.series}, ${d.attempt_count} attempt${d.attempt_count === 1 ? "" : "s"}`}</div>
            </td>
            <td data-label="Last attempt">
              <When at={d.last_attempt_at} now={now} />
              {d.last_status_code !== null ? <div class="sub">HTTP {String(d.last_status_code)}</div> : null}
              <NextAttempt delivery={d} now={now} />
            </td>
            <td data-label="Last error">{d.last_error ?? ""}</td>
            {admin ? <td data-label="Key">{props.keyNames.get(d.api_key_id) ?? d.api_key_id}</td> : null}
            <td data-label="Action">
              <RetryForm delivery={d} session={session} back={props.back} now={now} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Dead letters first, then pending and succeeded; or one status, paginated (`only`). */
export function DeliveriesPage(props: {
  session: DashboardSession;
  lists: DeliveryList[];
  only: DeliveryList["status"] | undefined;
  cursor: string | undefined;
  keyNames: Map<string, string>;
  now: Date;
  nonce: string;
  notice?: string | undefined;
}) {
  const back = props.only ? `/dashboard/deliveries?status=${props.only}` : "/dashboard/deliveries";
  return (
    <Page
      title="Deliveries"
      session={props.session}
      section="deliveries"
      notice={props.notice}
      nonce={props.nonce}
    >
      <h1>Deliveries</h1>
      <nav class="filters" aria-label="Delivery status">
        <a href="/dashboard/deliveries" aria-current={props.only ? undefined : "page"}>
          Overview
        </a>
        {(["dead", "pending", "succeeded"] as const).map((status) => (
          <a
            href={`/dashboard/deliveries?status=${status}`}
            aria-current={props.only === status ? "page" : undefined}
          >
            {status}
          </a>
        ))}
      </nav>
      {props.lists.map((list) => (
        <section id={`deliveries-${list.status}`}>
          <h2>{list.title}</h2>
          <DeliveryTable
            list={list}
            session={props.session}
            keyNames={props.keyNames}
            now={props.now}
            back={back}
          />
          {props.only ? (
            <Pager
              base="/dashboard/deliveries"
              params={{ status: list.status }}
              cursor={props.cursor}
              nextCursor={list.nextCursor}
            />
          ) : list.nextCursor ? (
            <p>
              <a href={`/dashboard/deliveries?status=${list.status}`}>All {list.status} deliveries →</a>
            </p>
          ) : null}
        </section>
      ))}
    </Page>
  );
}
