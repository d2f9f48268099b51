// A user's callback endpoint, for the local stack, the end-to-end tests and the benchmark: verifies
// every delivery with the standardwebhooks library (as a user would), records it, and answers 2xx —
// or fails the first N attempts of each delivery, to exercise retries.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface ReceivedDelivery {
  webhookId: string;
  attempt: number;
  receivedAtMs: number;
  verified: boolean;
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
  onDelivery?: (delivery: ReceivedDelivery) => void;
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

export async function startCallbackReceiver(options: ReceiverOptions = {}): Promise<CallbackReceiver> {
  const verifiers = (options.secrets ?? []).map((secret) => new Webhook(secret));
  let failFirst = options.failFirstAttempts ?? 0;
  const deliveries: ReceivedDelivery[] = [];
  const attempts = new Map<string, number>();

  const server: Server = createServer(async (request, response) => {
    const receivedAtMs = Date.now();
    const raw = await readBody(request);
    const headers = {
      "webhook-id": String(request.headers["webhook-id"] ?? ""),
      "webhook-timestamp": String(request.headers["webhook-timestamp"] ?? ""),
      "webhook-signature": String(request.headers["webhook-signature"] ?? ""),
    };
    const attempt = (attempts.get(headers["webhook-id"]) ?? 0) + 1;
    attempts.set(headers["webhook-id"], attempt);
    let body: ReceivedDelivery["body"] = null;
    for (const verifier of verifiers) {
      try {
        body = verifier.verify(raw, headers) as ReceivedDelivery["body"];
        break;
      } catch {
        // try the next key's secret
      }
    }
    const verified = body !== null;
    const accepted = verified && attempt > failFirst;
    const delivery = { webhookId: headers["webhook-id"], attempt, receivedAtMs, verified, accepted, body };
    deliveries.push(delivery);
    options.onDelivery?.(delivery);
    if (!verified) response.writeHead(401).end("signature did not verify");
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
