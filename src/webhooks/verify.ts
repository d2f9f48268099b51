// Verifies Parallel's signed completion webhooks (Standard Webhooks layout, reference §6.4):
// secret configured → headers present → timestamp within tolerance → raw body read once →
// HMAC-SHA256 over "id.timestamp.body" with WebCrypto → every `v1,` signature compared in
// constant time. Any failure is a 401 and nothing is written.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app-env";
import { requireSetting } from "../env";
import { ApiError } from "../errors";

export interface VerifiedWebhook {
  id: string;
  /** The webhook-timestamp header exactly as sent: the signature covers these characters. */
  timestamp: string;
  /** The raw body exactly as signed. */
  body: string;
}

const encoder = new TextEncoder();

/**
 * HMAC keys to try for a secret. Parallel documents the secret string's own bytes as the key; a
 * `whsec_` secret may instead be a Standard Webhooks base64 key, so both are tried for those.
 */
export function signingKeysFor(secret: string): Uint8Array[] {
  const keys = [encoder.encode(secret)];
  if (secret.startsWith("whsec_")) {
    try {
      keys.push(Uint8Array.from(atob(secret.slice("whsec_".length)), (c) => c.charCodeAt(0)));
    } catch {
      // Not base64 after the prefix: only the raw form can match.
    }
  }
  return keys;
}

// Imported once per secret and isolate: importKey is a measurable share of a webhook's cost.
const importedKeys = new Map<string, Promise<CryptoKey[]>>();

function hmacKeysFor(secret: string): Promise<CryptoKey[]> {
  let keys = importedKeys.get(secret);
  if (!keys) {
    keys = Promise.all(
      signingKeysFor(secret).map((key) =>
        crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
      ),
    );
    importedKeys.set(secret, keys);
  }
  return keys;
}

function decodeBase64(text: string): Uint8Array | null {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** The `v1,` signatures of a header like "v1,abc= v1,def=" (other versions are ignored). */
export function v1Signatures(header: string): Uint8Array[] {
  return header
    .split(" ")
    .filter((part) => part.startsWith("v1,"))
    .map((part) => decodeBase64(part.slice(3)))
    .filter((bytes): bytes is Uint8Array => bytes !== null && bytes.length === 32);
}

export async function signatureMatches(
  secrets: string[],
  webhook: VerifiedWebhook,
  signatureHeader: string,
): Promise<boolean> {
  const candidates = v1Signatures(signatureHeader);
  if (candidates.length === 0) return false;
  const signed = `${webhook.id}.${webhook.timestamp}.${webhook.body}`;
  let matched = false;
  const message = encoder.encode(signed);
  for (const secret of secrets) {
    for (const key of await hmacKeysFor(secret)) {
      const expected = new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
      // Compare against every candidate without stopping early, so timing says nothing about which matched.
      for (const candidate of candidates) {
        if (crypto.subtle.timingSafeEqual(expected, candidate)) matched = true;
      }
    }
  }
  return matched;
}

export function verifyParallelSignature() {
  return createMiddleware<AppEnv>(async function verifyParallelSignature(c, next) {
    const config = c.var.services.config;
    const secrets = [requireSetting(config, "PARALLEL_WEBHOOK_SECRET")];
    if (config.PARALLEL_WEBHOOK_SECRET_PREVIOUS) secrets.push(config.PARALLEL_WEBHOOK_SECRET_PREVIOUS);

    const id = c.req.header("webhook-id");
    const timestampHeader = c.req.header("webhook-timestamp");
    const signature = c.req.header("webhook-signature");
    const missing = [
      ["webhook-id", id],
      ["webhook-timestamp", timestampHeader],
      ["webhook-signature", signature],
    ].filter(([, value]) => !value);
    if (missing.length > 0 || !id || !timestampHeader || !signature) {
      throw new ApiError(
        "invalid_signature",
        `The webhook is missing the header(s) ${missing.map(([name]) => name).join(", ")}.`,
      );
    }

    const nowSeconds = Math.floor(c.var.services.now().getTime() / 1000);
    const tolerance = config.WEBHOOK_TOLERANCE_SECONDS;
    if (!/^\d+$/.test(timestampHeader) || Math.abs(nowSeconds - Number(timestampHeader)) > tolerance) {
      throw new ApiError(
        "invalid_signature",
        `The webhook timestamp is not within ${tolerance} seconds of now; a replay or a skewed clock.`,
      );
    }

    const body = await c.req.text();
    // Signed over the header as sent (Parallel signs "<webhook-id>.<webhook-timestamp>.<body>"), not
    // over the number it parses to: "01751498975" and "1751498975" are different signed texts.
    const webhook = { id, timestamp: timestampHeader, body };
    if (!(await signatureMatches(secrets, webhook, signature))) {
      throw new ApiError("invalid_signature", "No webhook-signature matches the configured secret.");
    }
    c.set("parallelWebhook", webhook);
    await next();
  });
}
