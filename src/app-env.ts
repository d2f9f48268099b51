// The Hono environment every route and middleware shares.
import type { ApiKeyRow } from "./db/keys";
import type { Env } from "./env";
import type { ServiceContext } from "./services/context";
import type { VerifiedWebhook } from "./webhooks/verify";

export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    services: ServiceContext;
    /** Set by requireApiKey: the calling key. */
    apiKey: ApiKeyRow;
    /** Set by requireApiKeyOrAdmin: true for the admin token (then apiKey is unset). */
    isAdmin: boolean;
    /** Set by verifyParallelSignature: the webhook whose signature checked out. */
    parallelWebhook: VerifiedWebhook;
  };
}
