// Schedules as the API takes and shows them. A schedule's template is a run request without the
// per-run fields: the schedule supplies the callback, chaining and the Idempotency-Key.
import { z } from "@hono/zod-openapi";
import { MISSED_POLICIES, NOTIFY_POLICIES, OCCURRENCE_OUTCOMES, OVERLAP_POLICIES } from "../db/schedules";
import { NextCursor, Timestamp } from "./common";
import { CallbackSchema, RunTemplateFields } from "./runs";

export const RunTemplateSchema = z
  .object(RunTemplateFields)
  .strict()
  .openapi("RunTemplate", {
    description:
      "What each run researches, as in POST /v1/runs. String values of `input` may use {{scheduled_at}}, " +
      "{{scheduled_date}}, {{last_success_at}} and {{last_success_date}}: *_at are ISO 8601 UTC instants, " +
      "*_date are YYYY-MM-DD in the schedule's time zone; last_success_* are empty before the first success, " +
      "unless they carry a fallback: {{last_success_date|the start of the month}}.",
    example: {
      processor: "base",
      input:
        "What did Acme Corp announce since {{last_success_date|the start of the month}}? Today is {{scheduled_date}}.",
    },
  });

export type RunTemplate = z.infer<typeof RunTemplateSchema>;

const Name = z.string().min(1).max(200).openapi({ example: "Acme news, weekdays at 9" });
const Cron = z.string().min(1).max(200).openapi({
  description: "Five fields: minute hour day-of-month month day-of-week, read in `timezone`.",
  example: "0 9 * * 1-5",
});
const TimeZone = z
  .string()
  .min(1)
  .max(64)
  .openapi({ description: "An IANA time zone name.", example: "America/New_York" });
const Overlap = z.enum(OVERLAP_POLICIES).openapi({
  description:
    "While the schedule's previous run is still in flight: `skip` records the occurrence as skipped (default), `allow` starts another run anyway.",
});
const Missed = z.enum(MISSED_POLICIES).openapi({
  description:
    "When occurrences were missed (no tick reached them within 2 minutes): `run_once` starts one run for all of them (default), `skip` starts none. Never a burst.",
});
const Notify = z.enum(NOTIFY_POLICIES).openapi({
  description:
    "`always` (default) sends every run's callback; `on_change` only when a run's output differs from the last successful run's (failures are always sent).",
});
const ChainInteractions = z.boolean().openapi({
  description: "Each run's previous_interaction_id is the last successful run's interaction_id.",
});
const Enabled = z.boolean().openapi({
  description: "false pauses the schedule; true resumes it from now (missed time is not made up).",
});

export const ScheduleCreateSchema = z
  .object({
    name: Name,
    cron: Cron,
    timezone: TimeZone,
    template: RunTemplateSchema,
    callback: CallbackSchema.nullish().openapi({
      description: "null or absent: no callback.",
      example: { url: "https://example.com/hooks/acme" },
    }),
    overlap: Overlap.default("skip"),
    missed: Missed.default("run_once"),
    notify: Notify.default("always"),
    chain_interactions: ChainInteractions.default(false),
    enabled: Enabled.default(true),
  })
  .strict()
  .openapi("ScheduleCreate");

export type ScheduleCreate = z.infer<typeof ScheduleCreateSchema>;

export const ScheduleUpdateSchema = z
  .object({
    name: Name.optional(),
    cron: Cron.optional(),
    timezone: TimeZone.optional(),
    template: RunTemplateSchema.optional().openapi({ description: "Replaces the whole template." }),
    callback: CallbackSchema.nullable().optional().openapi({ description: "null removes the callback." }),
    overlap: Overlap.optional(),
    missed: Missed.optional(),
    notify: Notify.optional(),
    chain_interactions: ChainInteractions.optional(),
    enabled: Enabled.optional(),
  })
  .strict()
  .openapi("ScheduleUpdate", {
    description: 'Any subset of the fields; `{"enabled": false}` pauses the schedule.',
    example: { enabled: false },
  });

export type ScheduleUpdate = z.infer<typeof ScheduleUpdateSchema>;

export const FireTimeSchema = z
  .object({
    utc: Timestamp,
    local: z.string().openapi({
      description: "The same moment as wall-clock time in the schedule's time zone, with its UTC offset.",
      example: "2026-11-30T09:00:00-05:00",
    }),
  })
  .openapi("FireTime");

export const ScheduleSchema = z
  .object({
    id: z.string().openapi({ example: "sch_01JD0Q4M3ZT6B3X9Y8W7V6U5T4" }),
    name: Name,
    cron: Cron,
    timezone: TimeZone,
    template: RunTemplateSchema,
    callback: CallbackSchema.nullable(),
    overlap: z.enum(OVERLAP_POLICIES),
    missed: z.enum(MISSED_POLICIES),
    notify: z.enum(NOTIFY_POLICIES),
    chain_interactions: ChainInteractions,
    enabled: Enabled,
    next_run_at: Timestamp.nullable().openapi({ description: "The next occurrence; null while paused." }),
    last_run_id: z.string().nullable().openapi({
      description: "The newest run it started (fired or triggered).",
      example: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4",
    }),
    last_fired_at: Timestamp.nullable().openapi({ description: "The occurrence the last run stands for." }),
    last_success_run_id: z
      .string()
      .nullable()
      .openapi({ description: "The newest of its runs that completed with a result." }),
    last_success_at: Timestamp.nullable().openapi({
      description: "The occurrence of the newest run that completed with a result.",
    }),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .openapi("Schedule");

export const ScheduleDetailSchema = ScheduleSchema.extend({
  next_fire_times: z.array(FireTimeSchema).openapi({
    description: "The next five occurrences, in UTC and in the schedule's time zone; empty while paused.",
  }),
}).openapi("ScheduleDetail", { description: "A schedule with its next five fire times." });

/** What a schedule or batch has cost: the sum of its runs Parallel accepted. */
export const SpendSchema = z
  .object({
    runs: z.number().int().openapi({ description: "Runs Parallel accepted.", example: 31 }),
    cost_usd: z.number().openapi({ description: "What they cost, in USD.", example: 3.1 }),
  })
  .openapi("Spend");

export const ScheduleWithSpendSchema = ScheduleDetailSchema.extend({ spend: SpendSchema }).openapi(
  "ScheduleWithSpend",
  { description: "A schedule with its next five fire times and what its runs have cost." },
);

export type ScheduleView = z.infer<typeof ScheduleSchema>;
export type ScheduleDetailView = z.infer<typeof ScheduleDetailSchema>;

export const ScheduleListSchema = z
  .object({ data: z.array(ScheduleSchema), next_cursor: NextCursor })
  .openapi("ScheduleList");

export const OccurrenceSchema = z
  .object({
    scheduled_at: Timestamp,
    decided_at: Timestamp,
    outcome: z.enum(OCCURRENCE_OUTCOMES).openapi({
      description:
        "fired (a run started for it), triggered (started by hand), skipped_overlap, skipped_missed, skipped_budget (the run would have passed the key's monthly budget; the reason starts `budget:`), failed (its run could not be made; see reason).",
    }),
    run_id: z.string().nullable().openapi({ description: "The run it started, if any." }),
    reason: z.string().nullable().openapi({
      description: "Why it was skipped or failed, or which missed occurrences a run covers.",
      example: "the previous run run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4 is still running",
    }),
  })
  .openapi("ScheduleOccurrence");

export const OccurrenceListSchema = z
  .object({ data: z.array(OccurrenceSchema), next_cursor: NextCursor })
  .openapi("ScheduleOccurrenceList");
