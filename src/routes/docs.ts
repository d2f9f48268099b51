// The interactive API reference at /docs: Scalar's page over /openapi.json. The page is a small HTML
// document; the browser loads Scalar's standalone script from its CDN (jsDelivr) when it opens it.
import { Scalar } from "@scalar/hono-api-reference";
import type { App } from "../app";

export function registerDocs(app: App) {
  app.get(
    "/docs",
    Scalar({
      url: "/openapi.json",
      pageTitle: "taskrelay API reference",
      hideClientButton: false,
      defaultHttpClient: { targetKey: "shell", clientKey: "curl" },
    }),
  );
}
