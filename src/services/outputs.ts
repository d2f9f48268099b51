// Where a run's output lives. D1 refuses a row or string over 2,000,000 bytes and every list would
// carry big rows around, so an output whose JSON is over INLINE_OUTPUT_MAX_BYTES goes to R2 (the
// OUTPUTS bucket) under the run's id and the row keeps only its key and size. The same threshold
// decides a callback: an output stored inline is sent inline, one in R2 is sent as a URL to fetch.
import type { Run, RunChanges } from "../db/runs";
import type { Env } from "../env";

/** 256 KiB: an output over this is stored in R2 and sent to callbacks as `output_url`. */
export const INLINE_OUTPUT_MAX_BYTES = 256 * 1024;

const encoder = new TextEncoder();
const JSON_METADATA = { contentType: "application/json" };

export function outputKey(runId: string): string {
  return `outputs/${runId}.json`;
}

/**
 * Stores the output where it belongs and returns the run's columns that say so. A large output is
 * written to R2 before the row is updated: a crash in between leaves an object the next fetch
 * overwrites, never a row pointing at nothing.
 */
export async function placeOutput(
  bucket: Env["OUTPUTS"],
  runId: string,
  output: Record<string, unknown>,
): Promise<Pick<RunChanges, "output" | "output_key" | "output_bytes">> {
  const json = JSON.stringify(output);
  // A JSON string of n UTF-16 units is at most 3n bytes: small outputs need no encoding to measure.
  if (json.length * 3 <= INLINE_OUTPUT_MAX_BYTES) {
    return { output, output_key: null, output_bytes: encoder.encode(json).length };
  }
  const bytes = encoder.encode(json);
  if (bytes.length <= INLINE_OUTPUT_MAX_BYTES)
    return { output, output_key: null, output_bytes: bytes.length };
  const key = outputKey(runId);
  await bucket.put(key, bytes, { httpMetadata: JSON_METADATA });
  return { output: null, output_key: key, output_bytes: bytes.length };
}

/**
 * An R2 part of a large output. R2's multipart upload wants parts of at least 5 MiB, all the same
 * size but the last; each part is one more call (a 50 MB output: 5 parts, 7 calls with the upload's
 * creation and completion), and one part is held in memory while it is filled.
 */
export const OUTPUT_PART_BYTES = 10 * 1024 * 1024;

/**
 * An output's JSON written as its bytes arrive, never whole in memory. What has arrived is held (as
 * the chunks it came in) until it makes a part: an output that ends at most INLINE_OUTPUT_MAX_BYTES
 * long is stored as placeOutput would, one that ends within the first part is put in one call, and
 * a longer one is sent as a multipart upload, a part at a time, so at most about two parts are in
 * memory (the chunks held and the part copied out of them).
 */
export class OutputSink {
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private total = 0;
  private upload: R2MultipartUpload | null = null;
  private readonly parts: R2UploadedPart[] = [];
  private readonly bucket: Env["OUTPUTS"];
  private readonly runId: string;

  constructor(bucket: Env["OUTPUTS"], runId: string) {
    this.bucket = bucket;
    this.runId = runId;
  }

  /** Takes the next bytes of the output (held as given: the caller must not reuse them). */
  async write(bytes: Uint8Array): Promise<void> {
    this.held.push(bytes);
    this.heldBytes += bytes.length;
    this.total += bytes.length;
    while (this.heldBytes >= OUTPUT_PART_BYTES) await this.sendPart(this.takeHeld(OUTPUT_PART_BYTES));
  }

  /** Stores what was written and returns the run's columns that say where it is. */
  async finish(): Promise<Pick<RunChanges, "output" | "output_key" | "output_bytes">> {
    const key = outputKey(this.runId);
    if (!this.upload) {
      const bytes = this.takeHeld(this.heldBytes);
      if (bytes.length <= INLINE_OUTPUT_MAX_BYTES) {
        const output = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
        return placeOutput(this.bucket, this.runId, output);
      }
      await this.bucket.put(key, bytes, { httpMetadata: JSON_METADATA });
    } else {
      if (this.heldBytes > 0) await this.sendPart(this.takeHeld(this.heldBytes));
      await this.upload.complete(this.parts);
    }
    return { output: null, output_key: key, output_bytes: this.total };
  }

  /** After a failure: drops a multipart upload begun (R2 would drop it after 7 days anyway). */
  async abort(): Promise<void> {
    await this.upload?.abort().catch(() => undefined);
  }

  /** The first `size` bytes held, copied out as one array; the rest stays held. */
  private takeHeld(size: number): Uint8Array {
    const bytes = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const piece = this.held[0] as Uint8Array;
      const take = Math.min(piece.length, size - at);
      bytes.set(piece.subarray(0, take), at);
      at += take;
      if (take === piece.length) this.held.shift();
      else this.held[0] = piece.subarray(take);
    }
    this.heldBytes -= size;
    return bytes;
  }

  private async sendPart(part: Uint8Array) {
    this.upload ??= await this.bucket.createMultipartUpload(outputKey(this.runId), {
      httpMetadata: JSON_METADATA,
    });
    this.parts.push(await this.upload.uploadPart(this.parts.length + 1, part));
  }
}

export function concatBytes(pieces: readonly Uint8Array[], total: number): Uint8Array {
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const piece of pieces) {
    bytes.set(piece, at);
    at += piece.length;
  }
  return bytes;
}

/** Whether a run has its result stored, inline or in R2. */
export function hasStoredOutput(run: Pick<Run, "result_stored_at" | "output" | "output_key">): boolean {
  return run.result_stored_at !== null && (run.output !== null || Boolean(run.output_key));
}

/** A stored output as bytes to send: inline ones serialised, R2 ones streamed from the bucket. */
export interface OutputBody {
  body: ReadableStream<Uint8Array>;
  bytes: number;
}

export async function readOutputBody(
  bucket: Env["OUTPUTS"],
  run: Pick<Run, "id" | "output" | "output_key">,
): Promise<OutputBody | null> {
  if (run.output_key) {
    const object = await bucket.get(run.output_key);
    return object ? { body: object.body, bytes: object.size } : null;
  }
  if (!run.output) return null;
  const bytes = encoder.encode(JSON.stringify(run.output));
  return { body: new Blob([bytes]).stream(), bytes: bytes.length };
}

/** The first `maxBytes` bytes of a large output's JSON, for a preview (may cut a character short). */
export async function readOutputStart(
  bucket: Env["OUTPUTS"],
  key: string,
  maxBytes: number,
): Promise<string> {
  const object = await bucket.get(key, { range: { offset: 0, length: maxBytes } });
  return object ? new TextDecoder().decode(await object.arrayBuffer()).replace(/\uFFFD$/, "") : "";
}

/**
 * `prefix`, then the body, then `suffix`, as one stream: wraps a stored output in a JSON envelope
 * (`{"run": …, "output": <output>}`) without holding the output in memory.
 */
export function wrapStream(
  prefix: string,
  body: ReadableStream<Uint8Array>,
  suffix: string,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(prefix));
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        controller.enqueue(encoder.encode(suffix));
        controller.close();
      } else {
        controller.enqueue(value);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

export function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/** SHA-256 (hex) of an output stored in R2, streamed through the digest; null if the object is gone. */
export async function storedOutputDigest(bucket: Env["OUTPUTS"], key: string): Promise<string | null> {
  const object = await bucket.get(key);
  if (!object) return null;
  const digest = new crypto.DigestStream("SHA-256");
  await object.body.pipeTo(digest);
  const bytes = new Uint8Array(await digest.digest);
  return `r2:${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}
