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
 * An output's JSON written as its bytes arrive, never whole in memory: held while it is at most
 * INLINE_OUTPUT_MAX_BYTES (then stored as placeOutput would), else filled into one part buffer at a
 * time, put in one call if it ends within the first part, otherwise sent as a multipart upload.
 */
export class OutputSink {
  private held: Uint8Array[] = [];
  private total = 0;
  private part: Uint8Array | null = null;
  private filled = 0;
  private upload: R2MultipartUpload | null = null;
  private readonly parts: R2UploadedPart[] = [];

  constructor(
    private readonly bucket: Env["OUTPUTS"],
    private readonly runId: string,
  ) {}

  /** Takes the next bytes of the output (kept as given until the part buffer exists: not reused by the caller). */
  async write(bytes: Uint8Array): Promise<void> {
    this.total += bytes.length;
    if (!this.part) {
      this.held.push(bytes);
      if (this.total <= INLINE_OUTPUT_MAX_BYTES) return;
      // Over the inline limit: from now on the output goes to R2, one part at a time.
      this.part = new Uint8Array(OUTPUT_PART_BYTES);
      const held = this.held;
      this.held = [];
      for (const piece of held) await this.fill(piece);
      return;
    }
    await this.fill(bytes);
  }

  /** Stores what was written and returns the run's columns that say where it is. */
  async finish(): Promise<Pick<RunChanges, "output" | "output_key" | "output_bytes">> {
    const key = outputKey(this.runId);
    if (!this.part) {
      const json = new TextDecoder().decode(concatBytes(this.held, this.total));
      return placeOutput(this.bucket, this.runId, JSON.parse(json) as Record<string, unknown>);
    }
    if (!this.upload) {
      await this.bucket.put(key, this.part.subarray(0, this.filled), { httpMetadata: JSON_METADATA });
    } else {
      if (this.filled > 0) await this.sendPart();
      await this.upload.complete(this.parts);
    }
    return { output: null, output_key: key, output_bytes: this.total };
  }

  /** After a failure: drops a multipart upload begun (R2 would drop it after 7 days anyway). */
  async abort(): Promise<void> {
    await this.upload?.abort().catch(() => undefined);
  }

  private async fill(bytes: Uint8Array) {
    const part = this.part as Uint8Array;
    let at = 0;
    while (at < bytes.length) {
      const take = Math.min(bytes.length - at, part.length - this.filled);
      part.set(bytes.subarray(at, at + take), this.filled);
      this.filled += take;
      at += take;
      if (this.filled === part.length) await this.sendPart();
    }
  }

  private async sendPart() {
    this.upload ??= await this.bucket.createMultipartUpload(outputKey(this.runId), {
      httpMetadata: JSON_METADATA,
    });
    // The part buffer is reused once the call returns: R2 has read it by then.
    const part = (this.part as Uint8Array).subarray(0, this.filled);
    this.parts.push(await this.upload.uploadPart(this.parts.length + 1, part));
    this.filled = 0;
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
