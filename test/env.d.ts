import type { D1Migration } from "cloudflare:test";
import type { Env as WorkerEnv } from "../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {
      TEST_MIGRATIONS: D1Migration[];
      /** test/worker/run-model.test.ts: the number of histories, the seed and path of a failure to replay ("" for the defaults). */
      MODEL_RUNS: string;
      MODEL_SEED: string;
      MODEL_PATH: string;
    }
    interface GlobalProps {
      mainModule: typeof import("../src/index");
    }
  }
}
