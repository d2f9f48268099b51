import type { DashboardSession } from "../../services/dashboard-sessions";
import { Page } from "../components";

const TITLES: Record<number, string> = {
  401: "Not signed in",
  403: "Refused",
  404: "Not found",
  409: "Not now",
  422: "Not possible",
};

export function ErrorPage({
  status,
  message,
  requestId,
  session,
}: {
  status: number;
  message: string;
  requestId: string;
  session?: DashboardSession | undefined;
}) {
  const title = TITLES[status] ?? "Something went wrong";
  return (
    <Page title={title} session={session}>
      <section class="card">
        <h1>{title}</h1>
        <p class="error" role="alert">
          {message}
        </p>
        <p class="sub">
          Request <code>{requestId}</code> · <a href="/dashboard/runs">Back to runs</a>
        </p>
      </section>
    </Page>
  );
}
