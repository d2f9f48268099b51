// API keys: minted by the admin, shown once, stored only as a hash.
import { type ApiKeyRow, insertApiKey, listKeys, revokeKey } from "../db/keys";
import { monthOf, setKeyBudget } from "../db/spend";
import { ApiError } from "../errors";
import { base64, newId, randomToken, sha256Hex } from "../ids";
import { microToUsd, usdToMicro } from "../pricing/prices";
import type { ServiceContext } from "./context";

const KEY_PREFIX = "trk_";
/** How many leading characters of a key are kept to recognise it in a list. */
const DISPLAY_PREFIX_CHARS = 12;

export interface KeyView {
  id: string;
  name: string;
  key_prefix: string;
  created_at: string;
  revoked_at: string | null;
  /** null: no budget. */
  monthly_budget_usd: number | null;
}

export interface CreatedKey extends KeyView {
  key: string;
  signing_secret: string;
}

export function toKeyView(row: ApiKeyRow): KeyView {
  return {
    id: row.id,
    name: row.name,
    key_prefix: row.key_prefix,
    created_at: row.created_at,
    revoked_at: row.revoked_at,
    monthly_budget_usd:
      row.monthly_budget_micro_usd === null ? null : microToUsd(row.monthly_budget_micro_usd),
  };
}

/** A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes. */
export function newSigningSecret(): string {
  return `whsec_${base64(crypto.getRandomValues(new Uint8Array(32)))}`;
}

export function hashApiKey(key: string): Promise<string> {
  return sha256Hex(key);
}

export async function createApiKey(
  ctx: ServiceContext,
  input: { name: string; monthly_budget_usd?: number | null | undefined },
): Promise<CreatedKey> {
  const { name } = input;
  const now = ctx.now();
  const budget = input.monthly_budget_usd ?? null;
  const key = `${KEY_PREFIX}${randomToken(32)}`;
  const row: ApiKeyRow = {
    id: newId("key", now),
    name,
    key_hash: await hashApiKey(key),
    key_prefix: key.slice(0, DISPLAY_PREFIX_CHARS),
    signing_secret: newSigningSecret(),
    created_at: now.toISOString(),
    revoked_at: null,
    monthly_budget_micro_usd: budget === null ? null : usdToMicro(budget),
    budget_month: budget === null ? null : monthOf(now),
    budget_spent_micro_usd: 0,
  };
  await insertApiKey(ctx.db, row).run();
  ctx.log.info("key.created", { key_id: row.id });
  return { ...toKeyView(row), key, signing_secret: row.signing_secret };
}

export async function listApiKeys(ctx: ServiceContext): Promise<KeyView[]> {
  return (await listKeys(ctx.db)).map(toKeyView);
}

export async function revokeApiKey(ctx: ServiceContext, id: string): Promise<KeyView> {
  const row = await revokeKey(ctx.db, id, ctx.now().toISOString());
  if (!row) throw new ApiError("not_found", `No API key ${id}.`);
  ctx.log.info("key.revoked", { key_id: id });
  return toKeyView(row);
}

/** The admin changes a key's settings: today its monthly budget (null removes it). */
export async function updateApiKey(
  ctx: ServiceContext,
  id: string,
  changes: { monthly_budget_usd: number | null },
): Promise<KeyView> {
  const budget = changes.monthly_budget_usd;
  const row = await setKeyBudget(
    ctx.db,
    id,
    budget === null ? null : usdToMicro(budget),
    ctx.now(),
  ).first<ApiKeyRow>();
  if (!row) throw new ApiError("not_found", `No API key ${id}.`);
  ctx.log.info("key.budget_set", { key_id: id, monthly_budget_usd: budget });
  return toKeyView(row);
}
