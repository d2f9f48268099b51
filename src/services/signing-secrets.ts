// Rotating the secret that signs a key's callbacks. The replaced secret keeps signing, as a second
// signature, for SIGNING_SECRET_OVERLAP_MS, so receivers can switch without dropping a delivery.
import { rotateSigningSecret } from "../db/keys";
import { ApiError } from "../errors";
import type { ServiceContext } from "./context";
import { newSigningSecret } from "./keys";
import { addMs, SIGNING_SECRET_OVERLAP_MS } from "./timing";

export interface RotatedSecret {
  id: string;
  signing_secret: string;
  previous_signing_secret_expires_at: string;
}

export async function rotateKeySigningSecret(ctx: ServiceContext, keyId: string): Promise<RotatedSecret> {
  const expiresAt = addMs(ctx.now(), SIGNING_SECRET_OVERLAP_MS).toISOString();
  const rotated = await rotateSigningSecret(ctx.db, keyId, newSigningSecret(), expiresAt);
  if (!rotated) throw new ApiError("not_found", `No API key ${keyId}.`);
  ctx.log.info("key.signing_secret_rotated", { key_id: keyId, previous_expires_at: expiresAt });
  return {
    id: rotated.id,
    signing_secret: rotated.signing_secret,
    previous_signing_secret_expires_at: expiresAt,
  };
}
