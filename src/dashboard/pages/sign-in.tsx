import { Page } from "../components";

export function SignInPage({
  formToken,
  error,
  notice,
}: {
  formToken: string;
  error?: string;
  notice?: string;
}) {
  return (
    <Page title="Sign in" notice={notice}>
      <section class="card signin">
        <h1>Sign in to taskrelay</h1>
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : null}
        <form method="post" action="/dashboard/sign-in">
          <input type="hidden" name="form_token" value={formToken} />
          <label for="credential">API key or admin token</label>
          <input
            id="credential"
            name="credential"
            type="password"
            autocomplete="off"
            required
            placeholder="trk_…"
          />
          <button class="primary" type="submit">
            Sign in
          </button>
        </form>
        <p class="sub">
          An API key shows its own runs, schedules and deliveries; the admin token shows every key's. The key
          is not kept in your browser: the session cookie holds a random token that expires in 12 hours.
        </p>
      </section>
    </Page>
  );
}
