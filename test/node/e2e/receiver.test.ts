// The local receiver (scripts/callback-receiver.ts), on its own: it verifies with the secrets it was
// given and with those it learns by webhook-id, learns a key once however many of its deliveries
// arrive together, and says in one line why it could not verify a callback.
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import {
  type CallbackReceiver,
  type KeySecrets,
  startCallbackReceiver,
} from "../../../scripts/callback-receiver.ts";

const SECRET = `whsec_${Buffer.from("a local key's signing secret, 32b").toString("base64")}`;
const OTHER = `whsec_${Buffer.from("another key's signing secret, 32b").toString("base64")}`;
const ID = (n: number) => `dlv_01M8V4BQRH6EW846EERBZFSS${String(n).padStart(2, "0")}`;
const BODY = JSON.stringify({
  type: "run.completed",
  timestamp: "2026-12-02T10:00:00.000Z",
  data: { run: { id: "run_1", status: "completed" }, output: null, error: null },
});

function signed(secret: string, id: string, at = new Date(), body = BODY) {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": new Webhook(secret).sign(id, at, body),
  };
}

let receiver: CallbackReceiver | null = null;
afterEach(async () => {
  await receiver?.close();
  receiver = null;
});

async function post(headers: Record<string, string>, body = BODY) {
  const response = await fetch(receiver?.url ?? "", { method: "POST", headers, body });
  return { status: response.status, text: await response.text() };
}

describe("the local receiver", () => {
  it("learns a key's secret by webhook-id, once for a burst of that key's deliveries", async () => {
    const lookups: string[] = [];
    receiver = await startCallbackReceiver({
      learnSecret: async (webhookId): Promise<KeySecrets | null> => {
        lookups.push(webhookId);
        await new Promise((r) => setTimeout(r, 50));
        return { keyId: "key_local", secrets: [SECRET] };
      },
    });
    const answers = await Promise.all([1, 2, 3, 4].map((n) => post(signed(SECRET, ID(n)))));
    expect(answers.map((a) => a.status)).toEqual([204, 204, 204, 204]);
    expect(lookups).toEqual([ID(1)]);
    expect(receiver.deliveries.every((d) => d.verified && d.reason === null)).toBe(true);
  });

  it.each([
    [
      "a delivery the stack does not know",
      () => signed(SECRET, ID(9)),
      `webhook-id ${ID(9)} is no delivery of this local stack, so its signing secret is unknown here`,
    ],
    [
      "another secret than its key's",
      () => signed(OTHER, ID(1)),
      "the signature does not match the signing secret of key_local, the key it was sent for: was the body changed on the way?",
    ],
    [
      "a timestamp off by an hour",
      () => signed(SECRET, ID(1), new Date(Date.now() - 3_600_000)),
      "is more than 5 minutes from this machine's clock (Message timestamp too old)",
    ],
    [
      "no signature headers",
      () => ({ "webhook-id": ID(1) }),
      "missing the webhook-id, webhook-timestamp or webhook-signature header",
    ],
  ])("says why it cannot verify %s, in one line, and answers 401", async (_, headers, reason) => {
    receiver = await startCallbackReceiver({
      learnSecret: async (webhookId) =>
        webhookId === ID(1) ? { keyId: "key_local", secrets: [SECRET] } : null,
    });
    const answer = await post(headers());
    expect(answer.status).toBe(401);
    expect(answer.text).toContain(reason);
    const [delivery] = receiver.deliveries;
    expect(delivery?.verified).toBe(false);
    expect(delivery?.reason).toContain(reason);
    expect(delivery?.reason).not.toContain("\n");
  });

  it("without a way to learn secrets, names how many it was given", async () => {
    receiver = await startCallbackReceiver({ secrets: [OTHER] });
    const answer = await post(signed(SECRET, ID(1)));
    expect(answer.status).toBe(401);
    expect(receiver.deliveries[0]?.reason).toBe(
      "the signature does not match the signing secret this receiver was given: was the body changed on the way?",
    );
  });
});
