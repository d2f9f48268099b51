// `npm run sim`: the simulator as a process. Settings from SIM_* variables (see README.md).
// The first line on stdout ends with the URL, so a launcher can read it.

import { configFromEnv, envName, SimConfigError } from "./config.ts";
import { startSim } from "./server.ts";

async function main(): Promise<void> {
  let settings: ReturnType<typeof configFromEnv>;
  try {
    settings = configFromEnv(process.env);
  } catch (error) {
    if (!(error instanceof SimConfigError)) throw error;
    console.error(`sim: ${error.message}`);
    process.exit(2);
  }
  for (const name of settings.unknown) console.warn(`sim: ignoring ${name}: no such setting`);

  let sim: Awaited<ReturnType<typeof startSim>>;
  try {
    sim = await startSim(settings.patch);
  } catch (error) {
    console.error(`sim: cannot start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
  const config = sim.control.config();
  console.log(`Parallel Task API simulator listening on ${sim.url}`);
  console.log(
    `  ${envName("api_key")}=${config.api_key} ${envName("signature_mode")}=${config.signature_mode} ` +
      `${envName("time_scale")}=${config.time_scale} ${envName("seed")}=${config.seed}` +
      (config.webhook_secret_previous === null ? "" : " (webhook secret rotation on)"),
  );

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    console.log(`sim: ${signal}, shutting down`);
    void sim.close().then(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

await main();
