// A user's callback endpoint, for the local stack, the end-to-end tests and the benchmark: verifies
// every delivery with the standardwebhooks library (as a user would), records it, and answers 2xx —
// or fails the first N attempts of each delivery, to exercise retries. A real receiver knows its
// key's signing secret (shown once when the key is made); the local stack's receiver can also learn
// the secret of any key made on that stack, from the local database (`learnSecret`), so a key minted
// by hand verifies too. What it cannot verify it says why, in one line.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface ReceivedDelivery {
  webhookId: string;
  attempt: number;
  receivedAtMs: number;
  verified: boolean;
  /** Why the delivery did not verify, in one line; null when it did. */
  reason: string | null;
  /** Answered 2xx: verified, and past the attempts this receiver fails on purpose. */
  accepted: boolean;
  /** Parsed body when verified. */
  body: {
    type: string;
    timestamp: string;
    data: { run: { id: string; status: string }; output: unknown; error: unknown };
  } | null;
}

export interface ReceiverOptions {
  port?: number;
  /** Signing secrets (whsec_…) of the API keys whose deliveries arrive here. */
  secrets?: string[];
  /** Answer 503 to the first N attempts of every delivery (by webhook-id). */
  failFirstAttempts?: number;
  /**
   * For a delivery no known secret verifies: the signing secrets of the key it was sent for, by its
   * webhook-id (the delivery id), or null when that delivery is unknown. Learned secrets are kept.
   */
  learnSecret?: (webhookId: string) => Promise<KeySecrets | null>;
  onDelivery?: (delivery: ReceivedDelivery) => void;
}

export interface KeySecrets {
  keyId: string;
  /** The current secret, and the previous one while a rotation's overlap lasts. */
  secrets: string[];
}

export interface CallbackReceiver {
  url: string;
  port: number;
  deliveries: ReceivedDelivery[];
  addSecret(secret: string): void;
  setFailFirstAttempts(count: number): void;
  /** Accepted deliveries, the first per webhook-id. */
  accepted(): Map<string, ReceivedDelivery>;
  close(): Promise<void>;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

type Headers = Record<"webhook-id" | "webhook-timestamp" | "webhook-signature", string>;
type Body = NonNullable<ReceivedDelivery["body"]>;
type Verified = { body: Body } | { reason: string };

/** One line on why a signature check failed, from standardwebhooks' error. */
function verificationReason(error: unknown, headers: Headers, whose: string): string {
  const message = error instanceof Error ? error.message : String(error);
  if (/timestamp too (old|new)/.test(message)) {
    return `webhook-timestamp ${headers["webhook-timestamp"]} is more than 5 minutes from this machine's clock (${message})`;
  }
  if (message === "No matching signature found") {
    return `the signature does not match ${whose}: was the body changed on the way?`;
  }
  return message;
}

export async function startCallbackReceiver(options: ReceiverOptions = {}): Promise<CallbackReceiver> {
  const verifiers = (options.secrets ?? []).map((secret) => new Webhook(secret));
  /** Secrets learned through `learnSecret`, by key id (replaced when a key's secret rotates). */
  const learned = new Map<string, Webhook[]>();
  let failFirst = options.failFirstAttempts ?? 0;
  const deliveries: ReceivedDelivery[] = [];
  const attempts = new Map<string, number>();
  // One look-up at a time: a burst of a new key's deliveries learns its secret once.
  let lookups: Promise<unknown> = Promise.resolve();

  const tryAll = (
    candidates: Webhook[],
    raw: string,
    headers: Headers,
  ): { body: Body } | { error: unknown } => {
    let error: unknown = new Error("No matching signature found");
    for (const verifier of candidates) {
      try {
        return { body: verifier.verify(raw, headers) as Body };
      } catch (failure) {
        error = failure; // try the next key's secret
      }
    }
    return { error };
  };
  const known = () => [...verifiers, ...[...learned.values()].flat()];

  const verify = async (raw: string, headers: Headers): Promise<Verified> => {
    if (!headers["webhook-id"] || !headers["webhook-timestamp"] || !headers["webhook-signature"]) {
      return { reason: "missing the webhook-id, webhook-timestamp or webhook-signature header" };
    }
    const first = tryAll(known(), raw, headers);
    if ("body" in first) return first;
    const learnSecret = options.learnSecret;
    if (!learnSecret) {
      const count = known().length;
      return {
        reason: verificationReason(
          first.error,
          headers,
          count === 1
            ? "the signing secret this receiver was given"
            : `any of the ${count} signing secrets this receiver was given`,
        ),
      };
    }
    const task = lookups.then(async (): Promise<Verified> => {
      const again = tryAll(known(), raw, headers); // an earlier look-up may have learned the key
      if ("body" in again) return again;
      const key = await learnSecret(headers["webhook-id"]).catch((error: unknown) => {
        throw new Error(`could not look up the signing secret of ${headers["webhook-id"]}: ${String(error)}`);
      });
      if (!key) {
        return {
          reason: `webhook-id ${headers["webhook-id"]} is no delivery of this local stack, so its signing secret is unknown here`,
        };
      }
      const mine = key.secrets.map((secret) => new Webhook(secret));
      const result = tryAll(mine, raw, headers);
      if ("body" in result) {
        learned.set(key.keyId, mine);
        return result;
      }
      return {
        reason: verificationReason(
          result.error,
          headers,
          `the signing secret of ${key.keyId}, the key it was sent for`,
        ),
      };
    });
    lookups = task.catch(() => undefined);
    return task.catch((error: unknown) => ({
      reason: error instanceof Error ? error.message : String(error),
    }));
  };

  const server: Server = createServer(async (request, response) => {
    const receivedAtMs = Date.now();
    const raw = await readBody(request);
    const headers: Headers = {
      "webhook-id": String(request.headers["webhook-id"] ?? ""),
      "webhook-timestamp": String(request.headers["webhook-timestamp"] ?? ""),
      "webhook-signature": String(request.headers["webhook-signature"] ?? ""),
    };
    const attempt = (attempts.get(headers["webhook-id"]) ?? 0) + 1;
    attempts.set(headers["webhook-id"], attempt);
    const result = await verify(raw, headers);
    const body = "body" in result ? result.body : null;
    const reason = "reason" in result ? result.reason : null;
    const verified = body !== null;
    const accepted = verified && attempt > failFirst;
    const delivery = {
      webhookId: headers["webhook-id"],
      attempt,
      receivedAtMs,
      verified,
      reason,
      accepted,
      body,
    };
    deliveries.push(delivery);
    options.onDelivery?.(delivery);
    if (!verified) response.writeHead(401).end(`signature did not verify: ${reason}`);
    else if (!accepted) response.writeHead(503).end("failing on purpose");
    else response.writeHead(204).end();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/callback`,
    port,
    deliveries,
    addSecret: (secret) => verifiers.push(new Webhook(secret)),
    setFailFirstAttempts: (count) => {
      failFirst = count;
    },
    accepted: () => {
      const unique = new Map<string, ReceivedDelivery>();
      for (const d of deliveries) if (d.accepted && !unique.has(d.webhookId)) unique.set(d.webhookId, d);
      return unique;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
