// A failed attempt is recorded in words a user can act on. What workerd's fetch throws is measured
// for real in test/node/e2e/launcher.test.ts (wrangler dev against a closed port, a name that does
// not resolve, a plain-http server behind an https URL and a server that never answers); here the
// mapping of those errors, and of the statuses Cloudflare's edge answers for an unreachable
// receiver (MSW at the HTTP boundary).
import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { describeSendFailure, postCallback } from "../../src/services/delivery-send";
import { network } from "./setup";

/** The errors workerd 1.20261102 throws, as observed: a plain Error, the reason only in its own log. */
const connectionLost = () => new Error("Network connection lost.");
const internalError = () => new Error("internal error; reference = 49nhqlc4ndl0nn60tmi4j6cj");

describe("a fetch that threw, in words", () => {
  it.each([
    [
      "a refused or dropped connection",
      connectionLost(),
      "http://127.0.0.1:8789/callback",
      "could not connect to 127.0.0.1:8789, or it closed the connection before answering (connection refused or reset): is the receiver listening there?",
    ],
    [
      "the same on https's default port",
      connectionLost(),
      "https://hooks.example.com/taskrelay",
      "could not connect to hooks.example.com:443, or it closed the connection before answering (connection refused or reset): is the receiver listening there?",
    ],
    [
      "a name that does not resolve (http)",
      internalError(),
      "http://hooks.exmaple.com/x",
      "could not resolve hooks.exmaple.com",
    ],
    [
      "a name that does not resolve, or TLS (https: workerd cannot tell them apart)",
      internalError(),
      "https://hooks.exmaple.com/x",
      "could not resolve hooks.exmaple.com, or the TLS handshake with hooks.exmaple.com:443 failed",
    ],
    [
      "TLS with an address (no name to resolve)",
      internalError(),
      "https://127.0.0.1:8789/callback",
      "TLS handshake with 127.0.0.1:8789 failed: does it serve https?",
    ],
    [
      "an internal error with nothing to tell",
      internalError(),
      "http://127.0.0.1:8789/callback",
      "request failed: Error: internal error; reference = 49nhqlc4ndl0nn60tmi4j6cj",
    ],
    [
      "anything else, as it came",
      new TypeError("Failed to fetch"),
      "https://a.example/",
      "request failed: TypeError: Failed to fetch",
    ],
  ])("%s", (_, error, url, words) => {
    expect(describeSendFailure(error, url, 15_000)).toBe(words);
  });

  it("a timeout says how long it waited", () => {
    const timeout = new DOMException("The operation was aborted due to timeout", "TimeoutError");
    expect(describeSendFailure(timeout, "https://a.example/", 15_000)).toBe("no response within 15 s");
  });
});

describe("Cloudflare's statuses for an unreachable receiver, in words", () => {
  const URL = "https://receiver.test/hooks/taskrelay";
  const send = () =>
    postCallback(
      { url: URL, headers: { "content-type": "application/json" }, body: "{}" },
      { timeoutMs: 5_000, now: new Date(), fetch: (input, init) => fetch(input, init) },
    );

  it.each([
    [521, "", "HTTP 521: the receiver's server refused the connection"],
    [522, "", "HTTP 522: connecting to the receiver timed out"],
    [523, "", "HTTP 523: the receiver's address is unreachable"],
    [524, "", "HTTP 524: the receiver accepted the connection but did not answer in time"],
    [525, "", "HTTP 525: the TLS handshake with the receiver failed"],
    [526, "", "HTTP 526: the receiver's TLS certificate is not valid"],
    [530, "error code: 1016", "HTTP 530: could not resolve receiver.test"],
    [530, "error code: 1033", "HTTP 530: Cloudflare error 1033"],
    [530, "", "HTTP 530"],
    [500, "error code: 1016", "HTTP 500"],
  ])("%i %s", async (code, body, words) => {
    network.use(http.post(URL, () => new HttpResponse(body || null, { status: code })));
    const result = await send();
    expect(result).toMatchObject({ ok: false, statusCode: code, error: words, gone: false });
  });

  it("reads no more than the start of a 530's body", async () => {
    network.use(
      http.post(URL, () => new HttpResponse(`${"x".repeat(100_000)} error code: 1016`, { status: 530 })),
    );
    expect((await send()).error).toBe("HTTP 530");
  });
});
