import type { D1Migration } from "cloudflare:test";
import type { Env as WorkerEnv } from "../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {
      TEST_MIGRATIONS: D1Migration[];
      /** test/worker/run-model.test.ts: the number of histories and the seed ("" for the defaults). */
      MODEL_RUNS: string;
      MODEL_SEED: string;
    }
    interface GlobalProps {
      mainModule: typeof import("../src/index");
    }
  }
}
