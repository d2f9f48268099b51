// The interactive API reference at /docs: Scalar's page over /openapi.json. The page is a small HTML
// document; its script, Scalar's standalone bundle, is one of the Worker's static assets (see
// wrangler.toml), so the page works offline and loads nothing from a CDN. Scalar's cloud features are
// switched off: they would send the document or the visitor's questions to scalar.com.
import { Scalar } from "@scalar/hono-api-reference";
import type { App } from "../app";

/** A 32×32 PNG icon in an .ico container (179 bytes), for /favicon.ico and the dashboard's pages. */
const FAVICON = Uint8Array.from(
  atob(
    "AAABAAEAICAAAAEAIACdAAAAFgAAAIlQTkcNChoKAAAADUlIRFIAAAAgAAAAIAgGAAAAc3p69AAAAGRJREFUeNpjYMABRBT0/lMTMxADqG0pSY6hl+VYHUFvyzEcMbIdMFCWwx2BT5JaYNQBQ9cBpDiOJolw1AGjDhh1wKgDyHFAyLr/GHjUAaMOGNy5YLRVPCgcMOBds0HROR2o7jkA9KS3lsF6AHUAAAAASUVORK5CYII=",
  ),
  (c) => c.charCodeAt(0),
);
export const FAVICON_PATH = "/favicon.ico";

export function registerDocs(app: App) {
  app.get(
    "/docs",
    Scalar({
      url: "/openapi.json",
      cdn: "/standalone.js",
      // Scalar's default fonts come from fonts.scalar.com; the page uses the system's instead.
      withDefaultFonts: false,
      pageTitle: "taskrelay API reference",
      favicon: FAVICON_PATH,
      defaultHttpClient: { targetKey: "shell", clientKey: "curl" },
      // No cloud features. "Ask AI" is Scalar's agent (on by default on localhost); the developer
      // toolbar holds "Share" (uploads the document), "Deploy" and "Generate SDK", and turning it off
      // also removes the sidebar's "Generate SDKs & MCP" offer; `mcp.disabled` removes "Generate MCP";
      // the "client button" is "Open API Client", a link to client.scalar.com. The in-page client
      // ("Test Request") stays: it sends to the server in /openapi.json, this relay.
      agent: { disabled: true },
      hideClientButton: true,
      showDeveloperTools: "never",
      mcp: { disabled: true },
      telemetry: false,
    }),
  );

  app.get(FAVICON_PATH, (c) => {
    c.header("content-type", "image/x-icon");
    c.header("cache-control", "public, max-age=86400");
    return c.body(FAVICON);
  });
}
