// A run's timeline and a delivery's attempts grow without bound (polls of a slow run, a delivery
// retried by hand again and again): both are read a page at a time, oldest first, with the same
// opaque cursors as every other list.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  claimDelivery,
  type Delivery,
  insertDelivery,
  recordAttempt,
  restartDelivery,
} from "../../src/db/deliveries";
import { overflowStatement, runEvent, TIMELINE_INLINE_MAX, timelineSet } from "../../src/db/run-events";
import { newId } from "../../src/ids";
import { RECEIVER, storeFinishedRun } from "./delivery-harness";
import { api, createTenant, expectJson, fakeParallel, postJson, TEXT_RUN, type Tenant } from "./harness";

interface TimelinePage {
  events: Array<{ at: string; kind: string; detail: { n?: number } | null }>;
  next_cursor: string | null;
}

async function timelinePage(tenant: Tenant, runId: string, query: string) {
  return expectJson<TimelinePage>(
    await api(`/v1/runs/${runId}/timeline${query}`, { headers: tenant.auth }),
    200,
  );
}

/** Adds `count` polled events to a run's timeline, numbered from 1, as the steps append them. */
async function addEvents(runId: string, count: number, from = 1, at = new Date().toISOString()) {
  for (let n = from; n < from + count; n += 50) {
    const events = Array.from({ length: Math.min(50, from + count - n) }, (_, i) =>
      runEvent(at, "polled", { n: n + i }),
    );
    const set = timelineSet(events);
    await env.DB.batch([
      env.DB.prepare(`UPDATE runs SET ${set.sql} WHERE id = ?`).bind(...set.params, runId),
      overflowStatement(env.DB, runId, events),
    ]);
  }
}

describe("a run's timeline", () => {
  it("comes a page at a time, oldest first, and the cursors walk it to the end exactly once", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    await addEvents(run.id, 45);

    const first = await timelinePage(tenant, run.id, "");
    expect(first.events).toHaveLength(20); // the default page, as every list
    expect(first.events.slice(0, 2).map((e) => e.kind)).toEqual(["stored", "submitted"]);
    expect(first.next_cursor).not.toBeNull();

    const seen = [...first.events];
    let cursor = first.next_cursor;
    while (cursor) {
      const page = await timelinePage(tenant, run.id, `?limit=20&cursor=${cursor}`);
      seen.push(...page.events);
      cursor = page.next_cursor;
    }
    expect(seen).toHaveLength(47);
    expect(seen.slice(2).map((e) => e.detail?.n)).toEqual(Array.from({ length: 45 }, (_, i) => i + 1));

    const all = await timelinePage(tenant, run.id, "?limit=100");
    expect(all.events).toEqual(seen);
    expect(all.next_cursor).toBeNull();
  });

  it("keeps the first events in the run's row and the rest in run_events, one timeline either way", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    // stored and submitted, then enough polls to go past the row's share by 60 (in steps of 50,
    // so one step straddles the limit and goes to run_events whole).
    const polls = TIMELINE_INLINE_MAX - 2 + 60;
    await addEvents(run.id, polls);
    const stored = await env.DB.prepare(
      `SELECT json_array_length(timeline) AS inline, timeline_count AS total,
         (SELECT COUNT(*) FROM run_events WHERE run_id = runs.id) AS overflow FROM runs WHERE id = ?`,
    )
      .bind(run.id)
      .first<{ inline: number; total: number; overflow: number }>();
    expect(stored?.total).toBe(polls + 2);
    expect(stored?.overflow).toBeGreaterThanOrEqual(60);
    expect((stored?.inline ?? 0) + (stored?.overflow ?? 0)).toBe(polls + 2);

    const seen: TimelinePage["events"] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const page: TimelinePage = await timelinePage(
        tenant,
        run.id,
        `?limit=37${cursor ? `&cursor=${cursor}` : ""}`,
      );
      seen.push(...page.events);
      cursor = page.next_cursor;
    }
    expect(seen.slice(0, 2).map((e) => e.kind)).toEqual(["stored", "submitted"]);
    expect(seen.slice(2).map((e) => e.detail?.n)).toEqual(Array.from({ length: polls }, (_, i) => i + 1));
  });

  it("reads a delivery's attempt events from their rows, in the place they were recorded, paged the same way", async () => {
    const tenant = await createTenant();
    const run = await storeFinishedRun(tenant.id, { callback_url: RECEIVER });
    // One instant for everything, as a frozen clock or a fast path within a millisecond gives: the
    // order must come from where each event was written, not from its time.
    const at = new Date().toISOString();
    const lease = new Date(Date.parse(at) + 60_000).toISOString();
    await addEvents(run.id, 2, 1, at);
    const id = newId("dlv");
    const created = (await insertDelivery(
      env.DB,
      {
        id,
        run_id: run.id,
        api_key_id: tenant.id,
        event: "run.completed",
        url: RECEIVER,
        status: "pending",
        series: 1,
        attempt_count: 0,
        next_attempt_at: at,
        lease_until: lease,
        last_attempt_at: null,
        last_status_code: null,
        last_error: null,
        created_at: at,
        updated_at: at,
      },
      { kind: "delivery_created", detail: { delivery_id: id } },
    )) as Delivery;
    const attempt = (d: Delivery, status_code: number) => ({
      delivery_id: id,
      series: d.series,
      attempt: d.attempt_count + 1,
      attempted_at: at,
      status_code,
      latency_ms: 1,
      error: status_code === 200 ? null : `HTTP ${status_code}`,
    });
    const ended = (status: "dead" | "succeeded", code: number) => ({
      status,
      next_attempt_at: null,
      lease_until: null,
      last_status_code: code,
      last_error: null,
    });
    const dead = (await recordAttempt(env.DB, created, at, attempt(created, 410), ended("dead", 410), [
      { kind: "delivery_attempted", detail: { delivery_id: id, series: 1, attempt: 1 } },
      { kind: "delivery_dead", detail: { delivery_id: id, series: 1, attempt: 1 } },
    ])) as Delivery;
    const restarted = (await restartDelivery(env.DB, dead, at, {
      kind: "delivery_retried",
      detail: { delivery_id: id, series: 2 },
    })) as Delivery;
    const claimed = (await claimDelivery(env.DB, restarted.id, at, lease)) as Delivery;
    await recordAttempt(env.DB, claimed, at, attempt(claimed, 200), ended("succeeded", 200), [
      { kind: "delivery_attempted", detail: { delivery_id: id, series: 2, attempt: 1 } },
      { kind: "delivery_succeeded", detail: { delivery_id: id, series: 2, attempt: 1 } },
    ]);
    await addEvents(run.id, 1, 3, at);

    // The attempts wrote no event to the run's row: its two polls, the creation, the retry, one poll.
    const row = await env.DB.prepare("SELECT timeline_count FROM runs WHERE id = ?")
      .bind(run.id)
      .first<{ timeline_count: number }>();
    expect(row?.timeline_count).toBe(5);

    const seen: TimelinePage["events"] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const page: TimelinePage = await timelinePage(
        tenant,
        run.id,
        `?limit=2${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(page.events.length).toBeLessThanOrEqual(2);
      seen.push(...page.events);
      cursor = page.next_cursor;
    }
    expect(
      seen.map((e) => [e.kind, (e.detail as { series?: number } | null)?.series ?? e.detail?.n]),
    ).toEqual([
      ["polled", 1],
      ["polled", 2],
      ["delivery_created", undefined],
      ["delivery_attempted", 1],
      ["delivery_dead", 1],
      ["delivery_retried", 2],
      ["delivery_attempted", 2],
      ["delivery_succeeded", 2],
      ["polled", 3],
    ]);
    expect(seen.every((e) => e.at === at)).toBe(true);
    const all = await timelinePage(tenant, run.id, "?limit=100");
    expect(all.events).toEqual(seen);
  });

  it("refuses a cursor it did not hand out, and hides another tenant's run", async () => {
    const tenant = await createTenant();
    const other = await createTenant("other");
    fakeParallel();
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const runsCursor = btoa(run.id).replaceAll("=", "");
    for (const cursor of [runsCursor, "not-a-cursor", btoa("att_1").replaceAll("=", "")]) {
      const refused = await expectJson<{ error: { code: string; details: Array<{ path: string }> } }>(
        await api(`/v1/runs/${run.id}/timeline?cursor=${cursor}`, { headers: tenant.auth }),
        422,
      );
      expect(refused.error.details[0]?.path).toBe("cursor");
    }
    await expectJson(await api(`/v1/runs/${run.id}/timeline`, { headers: other.auth }), 404);
  });
});

describe("a delivery's attempts", () => {
  async function deliveryWithAttempts(tenant: Tenant, count: number) {
    const run = await storeFinishedRun(tenant.id, { callback_url: RECEIVER });
    const id = newId("dlv");
    const at = new Date().toISOString();
    await env.DB.batch([
      env.DB.prepare(
        `INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count, created_at, updated_at)
         VALUES (?, ?, ?, 'run.completed', ?, 'dead', 4, 8, ?, ?)`,
      ).bind(id, run.id, tenant.id, RECEIVER, at, at),
      env.DB.prepare(
        `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
         INSERT INTO delivery_attempts (delivery_id, series, attempt, attempted_at, status_code, latency_ms, error)
         SELECT ?, (n - 1) / 8 + 1, (n - 1) % 8 + 1, ?, 503, n, 'HTTP 503' FROM seq`,
      ).bind(count, id, at),
    ]);
    return { run, id };
  }

  it("come with a run's deliveries up to a page, and the rest from /v1/deliveries/:id/attempts", async () => {
    const tenant = await createTenant();
    const { run, id } = await deliveryWithAttempts(tenant, 27);
    const listed = await expectJson<{
      data: Array<{
        id: string;
        attempts: Array<{ latency_ms: number }>;
        attempts_next_cursor: string | null;
      }>;
    }>(await api(`/v1/runs/${run.id}/deliveries`, { headers: tenant.auth }), 200);
    const delivery = listed.data[0];
    expect(delivery?.id).toBe(id);
    expect(delivery?.attempts.map((a) => a.latency_ms)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(delivery?.attempts_next_cursor).not.toBeNull();

    const rest = await expectJson<{
      delivery_id: string;
      data: Array<{ series: number; attempt: number; latency_ms: number }>;
      next_cursor: string | null;
    }>(
      await api(`/v1/deliveries/${id}/attempts?cursor=${delivery?.attempts_next_cursor}`, {
        headers: tenant.auth,
      }),
      200,
    );
    expect(rest.data.map((a) => a.latency_ms)).toEqual([21, 22, 23, 24, 25, 26, 27]);
    expect(rest.data.at(-1)).toMatchObject({ series: 4, attempt: 3 });
    expect(rest.next_cursor).toBeNull();

    const small = await expectJson<{ data: unknown[]; next_cursor: string | null }>(
      await api(`/v1/deliveries/${id}/attempts?limit=5`, { headers: tenant.auth }),
      200,
    );
    expect(small.data).toHaveLength(5);
    expect(small.next_cursor).not.toBeNull();
  });

  it("are another tenant's business: 404, as for an unknown delivery", async () => {
    const tenant = await createTenant();
    const other = await createTenant("other");
    const { id } = await deliveryWithAttempts(tenant, 3);
    await expectJson(await api(`/v1/deliveries/${id}/attempts`, { headers: other.auth }), 404);
    await expectJson(await api(`/v1/deliveries/${newId("dlv")}/attempts`, { headers: tenant.auth }), 404);
  });
});
