import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// No usage metrics from the wrangler code the pool and the local stack run (CI and a newcomer alike).
process.env.WRANGLER_SEND_METRICS ??= "false";

// Two worlds: the Worker's tests run inside workerd against real D1 with the real migrations;
// the simulator, the launcher and the end-to-end tests run in Node against real processes.
export default defineConfig(async () => {
  const migrations = await readD1Migrations("migrations");
  return {
    test: {
      // The Worker logs a JSON line per request; show a test's logs only when it fails. This is a
      // root option: the reporter reads `silent` from the root config, so in a project it did nothing.
      silent: "passed-only" as const,
      projects: [
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  TEST_MIGRATIONS: migrations,
                  // A complete configuration; tests that need a gap remove a setting from their env copy.
                  ADMIN_TOKEN: "test-admin-token",
                  PARALLEL_API_KEY: "test-parallel-key",
                  PARALLEL_BASE_URL: "https://parallel.test",
                  PARALLEL_WEBHOOK_SECRET: "test-webhook-secret",
                  PUBLIC_BASE_URL: "https://relay.test",
                  // The Paid plan's figure: a test's tick is bounded by its batch, not by the budget
                  // (test/worker/tick-budget.test.ts runs the Free plan's 50).
                  SUBREQUEST_BUDGET: "1000",
                  // A create limit no test reaches unless it lowers it (test/worker/create-limiter.test.ts):
                  // at 2,000 a minute, a file's hundreds of quick creates would be paced.
                  PARALLEL_CREATE_LIMIT_PER_MINUTE: "1000000",
                  // test/worker/run-model.test.ts: how many histories (default 1,000), which seed and path.
                  MODEL_RUNS: process.env.MODEL_RUNS ?? "",
                  MODEL_SEED: process.env.MODEL_SEED ?? "",
                  MODEL_PATH: process.env.MODEL_PATH ?? "",
                },
              },
            }),
          ],
          test: {
            name: "worker",
            include: ["test/worker/**/*.test.ts"],
            setupFiles: ["test/worker/setup.ts"],
          },
        },
        {
          test: {
            name: "node",
            environment: "node",
            include: ["test/node/**/*.test.ts"],
            testTimeout: 60_000,
            hookTimeout: 120_000,
          },
        },
      ],
    },
  };
});
