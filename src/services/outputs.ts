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

const MiB = 1024 * 1024;

/**
 * The smallest R2 part of a large output. R2's multipart upload wants parts of at least 5 MiB, all
 * the same size but the last; each part is one more R2 call, and the part being filled is held in
 * memory (as the chunks it came in) until it is sent.
 */
export const OUTPUT_PART_BYTES = 10 * MiB;
/**
 * At most this many parts: with the upload's creation and its completion (or abort), the R2 calls
 * one result fetch may make (OUTPUT_R2_CALLS), which its reservation in cron/costs.ts holds, so a
 * fetch stays within SUBREQUEST_BUDGET whatever the output's size.
 */
export const OUTPUT_MAX_PARTS = 3;
export const OUTPUT_R2_CALLS = OUTPUT_MAX_PARTS + 2;
/** The largest part: held while it fills, a quarter of an isolate's 128 MB. */
export const OUTPUT_PART_MAX_BYTES = 32 * MiB;
/** The largest output taskrelay stores (96 MiB): three parts of the largest size. */
export const OUTPUT_MAX_BYTES = OUTPUT_MAX_PARTS * OUTPUT_PART_MAX_BYTES;

/**
 * The part size for an output of about `expectedBytes` (a body's Content-Length): as small as lets
 * it fit in OUTPUT_MAX_PARTS, in whole MiB. Unknown (no length, or a compressed one): the largest,
 * so that any output up to OUTPUT_MAX_BYTES fits, at the price of holding up to one such part.
 */
export function outputPartBytes(expectedBytes: number | null): number {
  if (expectedBytes === null) return OUTPUT_PART_MAX_BYTES;
  const fitting = Math.ceil(expectedBytes / OUTPUT_MAX_PARTS / MiB) * MiB;
  return Math.min(OUTPUT_PART_MAX_BYTES, Math.max(OUTPUT_PART_BYTES, fitting));
}

/** An output over what one fetch may store (OUTPUT_MAX_PARTS parts of its part size). */
export class OutputTooLargeError extends Error {}

/**
 * An output's JSON written as its bytes arrive, never whole in memory. What has arrived is held (as
 * the chunks it came in) until it makes a part: an output that ends at most INLINE_OUTPUT_MAX_BYTES
 * long is stored as placeOutput would, one that ends within the first part is put in one call, and
 * a longer one is sent as a multipart upload, a part at a time. A part is streamed to R2 from the
 * chunks held (no copy of it is made), and no more is read meanwhile: at most one part is in memory.
 */
export class OutputSink {
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private total = 0;
  private upload: R2MultipartUpload | null = null;
  private readonly parts: R2UploadedPart[] = [];
  private readonly bucket: Env["OUTPUTS"];
  private readonly runId: string;
  private readonly partBytes: number;

  constructor(bucket: Env["OUTPUTS"], runId: string, partBytes = OUTPUT_PART_BYTES) {
    this.bucket = bucket;
    this.runId = runId;
    this.partBytes = partBytes;
  }

  /** Takes the next bytes of the output (held as given: the caller must not reuse them). */
  async write(bytes: Uint8Array): Promise<void> {
    this.held.push(bytes);
    this.heldBytes += bytes.length;
    this.total += bytes.length;
    const limit = OUTPUT_MAX_PARTS * this.partBytes;
    if (this.total > limit) {
      throw new OutputTooLargeError(
        `The output is over ${limit} bytes (${OUTPUT_MAX_PARTS} R2 parts of ${this.partBytes} bytes), more than one fetch may store.`,
      );
    }
    while (this.heldBytes >= this.partBytes)
      await this.sendPart(this.takeHeld(this.partBytes), this.partBytes);
  }

  /** Stores what was written and returns the run's columns that say where it is. */
  async finish(): Promise<Pick<RunChanges, "output" | "output_key" | "output_bytes">> {
    const key = outputKey(this.runId);
    if (!this.upload) {
      const size = this.heldBytes;
      const pieces = this.takeHeld(size);
      if (size <= INLINE_OUTPUT_MAX_BYTES) {
        const output = JSON.parse(new TextDecoder().decode(concatBytes(pieces, size))) as Record<
          string,
          unknown
        >;
        return placeOutput(this.bucket, this.runId, output);
      }
      await this.bucket.put(key, streamOf(pieces, size).readable, { httpMetadata: JSON_METADATA });
    } else {
      if (this.heldBytes > 0) {
        const size = this.heldBytes;
        await this.sendPart(this.takeHeld(size), size);
      }
      await this.upload.complete(this.parts);
    }
    return { output: null, output_key: key, output_bytes: this.total };
  }

  /** After a failure: drops a multipart upload begun (R2 would drop it after 7 days anyway). */
  async abort(): Promise<void> {
    await this.upload?.abort().catch(() => undefined);
  }

  /** The first `size` bytes held, as the pieces they are in (a piece cut in two at the end); the rest stays held. */
  private takeHeld(size: number): Uint8Array[] {
    const taken: Uint8Array[] = [];
    let at = 0;
    while (at < size) {
      const piece = this.held[0] as Uint8Array;
      const take = Math.min(piece.length, size - at);
      taken.push(take === piece.length ? piece : piece.subarray(0, take));
      at += take;
      if (take === piece.length) this.held.shift();
      else this.held[0] = piece.subarray(take);
    }
    this.heldBytes -= size;
    return taken;
  }

  private async sendPart(pieces: Uint8Array[], size: number) {
    this.upload ??= await this.bucket.createMultipartUpload(outputKey(this.runId), {
      httpMetadata: JSON_METADATA,
    });
    const stream = streamOf(pieces, size);
    const [part] = await Promise.all([
      this.upload.uploadPart(this.parts.length + 1, stream.readable),
      stream.written,
    ]);
    this.parts.push(part);
  }
}

/** `pieces` (`size` bytes in all) as a stream of known length, which R2 takes as a body without a copy. */
function streamOf(pieces: readonly Uint8Array[], size: number) {
  const { readable, writable } = new FixedLengthStream(size);
  const writer = writable.getWriter();
  const written = (async () => {
    for (const piece of pieces) await writer.write(piece);
    await writer.close();
  })();
  // Should R2 refuse the body, the writes end with it: the failure is R2's, reported by its call.
  written.catch(() => undefined);
  return { readable, written };
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
