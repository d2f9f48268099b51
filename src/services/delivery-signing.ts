// Standard Webhooks signatures (https://www.standardwebhooks.com): `v1,` + base64 HMAC-SHA256 of
// "<webhook-id>.<webhook-timestamp>.<body>", keyed by the base64-decoded bytes after `whsec_`.
// Several signatures are separated by spaces; a receiver accepts the message if any one verifies.
import { base64 } from "../ids";

const SECRET_PREFIX = "whsec_";

function secretBytes(secret: string): Uint8Array<ArrayBuffer> {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  return Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
}

export async function signatureFor(
  secret: string,
  webhookId: string,
  timestampSeconds: number,
  body: string,
): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    secretBytes(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const content = new TextEncoder().encode(`${webhookId}.${timestampSeconds}.${body}`);
  const mac = await crypto.subtle.sign("HMAC", key, content);
  return `v1,${base64(new Uint8Array(mac))}`;
}

/** The `webhook-signature` header: one signature per secret, newest secret first. */
export async function signatureHeader(
  secrets: string[],
  webhookId: string,
  timestampSeconds: number,
  body: string,
): Promise<string> {
  const signatures = await Promise.all(
    secrets.map((secret) => signatureFor(secret, webhookId, timestampSeconds, body)),
  );
  return signatures.join(" ");
}
