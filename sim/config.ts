// Settings: one zod schema read from SIM_* environment variables at start and from
// POST /_sim/config while running (same names, lower case, without the SIM_ prefix).

import { z } from "zod";
import { ENDPOINT_KEYS } from "./endpoints.ts";

const fraction = z.number().min(0).max(1);
const milliseconds = z.number().min(0).max(2_147_483_647);
const endpointRates = z.partialRecord(z.enum(ENDPOINT_KEYS), fraction);

const settingFields = {
  /** Startup only. 0 picks a free port. */
  port: z.number().int().min(0).max(65_535),
  /** Startup only. */
  host: z.string().min(1),
  api_key: z.string().min(1),
  seed: z.number().int(),
  /** Multiplies every duration of Parallel's time: run latency, webhook back-off, SSE windows. */
  time_scale: z.number().positive().max(1_000),
  /** When set, every run takes exactly this many wall-clock ms (not scaled) instead of §8's range. */
  run_duration_ms: milliseconds.nullable(),
  /** With run_duration_ms: plus a seeded 0..N wall-clock ms per run, so runs made together end apart. */
  run_duration_jitter_ms: milliseconds,
  fail_runs: fraction,
  rate_limit_per_minute: z.number().int().min(1),
  error_rate: fraction,
  error_rate_by_endpoint: endpointRates,
  throttle_rate: fraction,
  throttle_rate_by_endpoint: endpointRates,
  latency_ms: milliseconds,
  latency_jitter_ms: milliseconds,
  webhook_secret: z.string().min(1),
  webhook_secret_previous: z.string().min(1).nullable(),
  signature_mode: z.enum(["raw", "whsec"]),
  webhook_max_attempts: z.number().int().min(1).max(64),
  webhook_retry_base_ms: milliseconds,
  /** Each back-off × (1 ± this), seeded; 0 = the exact doubling. */
  webhook_retry_jitter: fraction,
  /** Attempts open at once to one receiver (URL origin); the rest wait their turn in order. */
  webhook_concurrency: z.number().int().min(1).max(10_000),
  webhook_timeout_ms: z.number().int().min(1).max(600_000),
  drop_webhooks: fraction,
  duplicate_webhooks: fraction,
  delay_webhooks: fraction,
  webhook_delay_ms: milliseconds,
  max_runs: z.number().int().min(1),
  max_webhook_log: z.number().int().min(1),
};

export const simConfigSchema = z.object(settingFields).strict();
export const simConfigPatchSchema = z.object(settingFields).partial().strict();

export type SimConfig = z.infer<typeof simConfigSchema>;
export type SimConfigPatch = z.infer<typeof simConfigPatchSchema>;
export type SettingName = keyof SimConfig;

export const DEFAULT_CONFIG: Readonly<SimConfig> = Object.freeze({
  port: 8788,
  host: "127.0.0.1",
  api_key: "sim-key",
  seed: 1,
  time_scale: 1,
  run_duration_ms: null,
  run_duration_jitter_ms: 0,
  fail_runs: 0,
  rate_limit_per_minute: 2_000,
  error_rate: 0,
  error_rate_by_endpoint: {},
  throttle_rate: 0,
  throttle_rate_by_endpoint: {},
  latency_ms: 0,
  latency_jitter_ms: 0,
  webhook_secret: "sim-webhook-secret",
  webhook_secret_previous: null,
  signature_mode: "raw",
  // 1 + 15 retries: doubling from 5 s, the 15th retry lands ~45.5 h in, inside Parallel's "48 hours".
  webhook_max_attempts: 16,
  webhook_retry_base_ms: 5_000,
  // Parallel documents the doubling, not its jitter or concurrency: a real sender has both (README).
  webhook_retry_jitter: 0.2,
  webhook_concurrency: 16,
  webhook_timeout_ms: 15_000,
  drop_webhooks: 0,
  duplicate_webhooks: 0,
  delay_webhooks: 0,
  webhook_delay_ms: 10_000,
  max_runs: 20_000,
  max_webhook_log: 20_000,
});

/** Settings that only take effect when the server starts. */
export const STARTUP_ONLY: ReadonlySet<SettingName> = new Set<SettingName>(["port", "host"]);

export class SimConfigError extends Error {
  readonly issues: readonly string[];

  constructor(issues: readonly string[]) {
    super(`invalid simulator settings: ${issues.join("; ")}`);
    this.name = "SimConfigError";
    this.issues = issues;
  }
}

function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
}

/** The whsec_ form is base64 after the prefix; refuse what would sign with an empty or garbled key. */
function whsecProblem(secret: string): string | null {
  const encoded = secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length % 4 !== 0) {
    return "is not base64 (optionally prefixed whsec_), which signature_mode whsec needs";
  }
  return null;
}

/** Applies a patch (unknown input, e.g. a request body) to a configuration. Throws SimConfigError. */
export function applyConfigPatch(base: SimConfig, patch: unknown): SimConfig {
  const parsed = simConfigPatchSchema.safeParse(patch ?? {});
  if (!parsed.success) throw new SimConfigError(formatIssues(parsed.error));
  const next: SimConfig = { ...base, ...parsed.data };
  if (next.signature_mode === "whsec") {
    const issues: string[] = [];
    const current = whsecProblem(next.webhook_secret);
    if (current) issues.push(`webhook_secret: ${current}`);
    const previous =
      next.webhook_secret_previous === null ? null : whsecProblem(next.webhook_secret_previous);
    if (previous) issues.push(`webhook_secret_previous: ${previous}`);
    if (issues.length > 0) throw new SimConfigError(issues);
  }
  return next;
}

/** The environment variable that carries a setting. */
export function envName(setting: SettingName): string {
  return `SIM_${setting.toUpperCase()}`;
}

const NULLABLE_NUMBERS: ReadonlySet<SettingName> = new Set<SettingName>(["run_duration_ms"]);

function fromEnvString(setting: SettingName, raw: string): unknown {
  const fallback = DEFAULT_CONFIG[setting];
  if (raw === "null" && (fallback === null || NULLABLE_NUMBERS.has(setting))) return null;
  if (NULLABLE_NUMBERS.has(setting) || typeof fallback === "number") {
    // Number("") is 0, which would hide a mistake; let zod report it instead.
    return raw.trim() === "" ? raw : Number(raw);
  }
  if (typeof fallback === "object" && fallback !== null) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  return raw;
}

export interface EnvSettings {
  patch: SimConfigPatch;
  /** SIM_* variables that name no setting: most likely typos, worth a warning. */
  unknown: string[];
}

/** Reads SIM_* variables. Empty variables count as unset. Throws SimConfigError. */
export function configFromEnv(env: Readonly<Record<string, string | undefined>>): EnvSettings {
  const raw: Record<string, unknown> = {};
  const known = new Set<string>();
  for (const setting of Object.keys(DEFAULT_CONFIG) as SettingName[]) {
    const name = envName(setting);
    known.add(name);
    const value = env[name];
    if (value !== undefined && value !== "") raw[setting] = fromEnvString(setting, value);
  }
  const parsed = simConfigPatchSchema.safeParse(raw);
  if (!parsed.success) {
    throw new SimConfigError(
      parsed.error.issues.map((issue) => {
        const [first, ...rest] = issue.path.map(String);
        const where = first === undefined ? "(env)" : envName(first as SettingName);
        return `${[where, ...rest].join(".")}: ${issue.message}`;
      }),
    );
  }
  const unknown = Object.keys(env).filter((name) => name.startsWith("SIM_") && !known.has(name));
  return { patch: parsed.data, unknown };
}
