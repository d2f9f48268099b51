// The interactive API reference at /docs: Scalar's page over /openapi.json. The page is a small HTML
// document; its script, Scalar's standalone bundle, is one of the Worker's static assets (see
// wrangler.toml), so the page works offline and loads nothing from a CDN.
import { Scalar } from "@scalar/hono-api-reference";
import type { App } from "../app";

export function registerDocs(app: App) {
  app.get(
    "/docs",
    Scalar({
      url: "/openapi.json",
      cdn: "/standalone.js",
      // Scalar's default fonts come from fonts.scalar.com; the page uses the system's instead.
      withDefaultFonts: false,
      pageTitle: "taskrelay API reference",
      hideClientButton: false,
      defaultHttpClient: { targetKey: "shell", clientKey: "curl" },
    }),
  );
}
