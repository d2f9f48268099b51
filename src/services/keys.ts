// API keys: minted by the admin, shown once, stored only as a hash.
import { type ApiKeyRow, insertApiKey, listKeys, revokeKey } from "../db/keys";
import { ApiError } from "../errors";
import { base64, newId, randomToken, sha256Hex } from "../ids";
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
  };
}

/** A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes. */
export function newSigningSecret(): string {
  return `whsec_${base64(crypto.getRandomValues(new Uint8Array(32)))}`;
}

export function hashApiKey(key: string): Promise<string> {
  return sha256Hex(key);
}

export async function createApiKey(ctx: ServiceContext, name: string): Promise<CreatedKey> {
  const now = ctx.now();
  const key = `${KEY_PREFIX}${randomToken(32)}`;
  const row: ApiKeyRow = {
    id: newId("key", now),
    name,
    key_hash: await hashApiKey(key),
    key_prefix: key.slice(0, DISPLAY_PREFIX_CHARS),
    signing_secret: newSigningSecret(),
    created_at: now.toISOString(),
    revoked_at: null,
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
