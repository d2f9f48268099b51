// Reading Parallel's /result body, `{"run": TaskRun, "output": {...}}`, without holding a large one
// in memory. A body of at most INLINE_OUTPUT_MAX_BYTES (by its Content-Length when given, else by
// the bytes read so far) is parsed whole, as the SDK would. A larger one is split as it arrives
// (json-split.ts): `run` is kept and parsed (it is small: status, metadata, warnings), the output's
// bytes go to R2 as they come (OutputSink), and of the output only its `type` is read on the way.
// The basis stays inside the stored output: D1 keeps nothing of it.
//
// Every read has an idle limit: a body that stops sending (Parallel or the network stalled) ends the
// attempt with ResultBodyError `result_body_stalled` instead of holding the invocation until
// Cloudflare's wall-clock limit. An output over what one fetch may store (OUTPUT_MAX_BYTES, by
// Content-Length or as it arrives) ends it with `result_too_large`.

import type { RunChanges } from "../db/runs";
import type { Env } from "../env";
import { JsonObjectSplitter } from "../json-split";
import {
  concatBytes,
  INLINE_OUTPUT_MAX_BYTES,
  OUTPUT_MAX_BYTES,
  OutputSink,
  OutputTooLargeError,
  outputPartBytes,
  placeOutput,
} from "./outputs";

/** The TaskRun in a result: status, metadata, warnings. More than this is not a TaskRun. */
const RUN_MAX_BYTES = 256 * 1024;
/** The output's `type` ("text" or "json"). */
const TYPE_MAX_BYTES = 256;

/** Why a result's body could not be stored, as the code its failure is recorded with. */
export class ResultBodyError extends Error {
  readonly code: "result_body_stalled" | "result_too_large";
  constructor(code: ResultBodyError["code"], message: string) {
    super(message);
    this.code = code;
  }
}

export interface ReadOptions {
  /** A read that brings nothing for this long ends the attempt (services/timing.ts resultBodyIdleMs). */
  idleMs: number;
}

export interface StoredResult {
  /** The result's `run` (a TaskRun), as Parallel sent it; the caller checks its shape. */
  run: unknown;
  /** The output's `type`, when it has a string one. */
  outputType: string | null;
  /** Where the output now is: the run's columns that say so. */
  placed: Pick<RunChanges, "output" | "output_key" | "output_bytes">;
  /** Whether the body was parsed whole (small) or split as it arrived (large). */
  read: "whole" | "streamed";
}

/** Stores the output of a 200 from /result; throws if the body cannot be read or is not a result. */
export async function storeResultBody(
  bucket: Env["OUTPUTS"],
  runId: string,
  response: Response,
  options: ReadOptions,
): Promise<StoredResult> {
  if (!response.body) throw new Error("The result has no body.");
  // Content-Length is of the bytes sent: for a compressed body it is smaller than what is read,
  // so it can only say "large"; "small" is decided by the bytes themselves.
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared > OUTPUT_MAX_BYTES + RUN_MAX_BYTES) {
    // Refused before a byte is read: downloading it again and again would not make it fit.
    await response.body.cancel().catch(() => undefined);
    throw new ResultBodyError(
      "result_too_large",
      `The result is ${declared} bytes; taskrelay stores outputs of at most ${OUTPUT_MAX_BYTES} bytes.`,
    );
  }
  const encoded = (response.headers.get("content-encoding") ?? "identity") !== "identity";
  const body = idleLimited(response.body.getReader(), options.idleMs);
  try {
    const head: Uint8Array[] = [];
    let bytes = 0;
    if (!(declared > INLINE_OUTPUT_MAX_BYTES)) {
      while (bytes <= INLINE_OUTPUT_MAX_BYTES) {
        const { done, value } = await body.read();
        if (done) return await storeWhole(bucket, runId, concatBytes(head, bytes));
        head.push(value);
        bytes += value.length;
      }
    }
    // The part size from the length when it is the output's (near enough), else the largest.
    const partBytes = outputPartBytes(declared > 0 && !encoded ? declared : null);
    return await storeStreamed(bucket, runId, head, body, partBytes);
  } catch (error) {
    await body.cancel();
    if (error instanceof OutputTooLargeError) throw new ResultBodyError("result_too_large", error.message);
    throw error;
  }
}

interface IdleLimitedReader {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(): Promise<void>;
}

/** The body's reader, each read given at most `idleMs` to bring something. */
function idleLimited(reader: ReadableStreamDefaultReader<Uint8Array>, idleMs: number): IdleLimitedReader {
  let received = 0;
  return {
    async read() {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new ResultBodyError(
                "result_body_stalled",
                `The result's body sent nothing for ${idleMs} ms, after ${received} bytes.`,
              ),
            ),
          idleMs,
        );
      });
      try {
        const result = await Promise.race([reader.read(), stalled]);
        if (!result.done) received += result.value.length;
        return result;
      } finally {
        clearTimeout(timer);
      }
    },
    // Ends the download (a stalled read included: it resolves done).
    cancel: () => reader.cancel().catch(() => undefined),
  };
}

async function storeWhole(bucket: Env["OUTPUTS"], runId: string, body: Uint8Array): Promise<StoredResult> {
  const result = JSON.parse(new TextDecoder().decode(body)) as { run?: unknown; output?: unknown };
  if (!result.output || typeof result.output !== "object") throw new Error("The result has no output.");
  const output = result.output as Record<string, unknown>;
  return {
    run: result.run,
    outputType: typeof output.type === "string" ? output.type : null,
    placed: await placeOutput(bucket, runId, output),
    read: "whole",
  };
}

async function storeStreamed(
  bucket: Env["OUTPUTS"],
  runId: string,
  head: Uint8Array[],
  reader: IdleLimitedReader,
  partBytes: number,
): Promise<StoredResult> {
  const result = new JsonObjectSplitter({
    run: { keep: true, maxBytes: RUN_MAX_BYTES },
    output: { stream: true },
  });
  // The output's own members, for its type only: fed until the type is found. Parallel puts `type`
  // anywhere among `content` and `basis`, so at worst the output is scanned twice (the scans are
  // indexOf over long strings: fast next to the download).
  const outputHead = new JsonObjectSplitter({ type: { keep: true, maxBytes: TYPE_MAX_BYTES } });
  const sink = new OutputSink(bucket, runId, partBytes);
  let sawOutput = false;
  const feed = async (chunk: Uint8Array) => {
    for (const piece of result.write(chunk)) {
      sawOutput = true;
      if (!outputHead.settled && !outputHead.ended) outputHead.write(piece.bytes);
      await sink.write(piece.bytes);
    }
  };
  try {
    for (const chunk of head) await feed(chunk);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await feed(value);
    }
    result.end();
    if (!sawOutput) throw new Error("The result has no output.");
    const type = outputHead.keptValues().get("type");
    return {
      run: result.keptValues().get("run"),
      outputType: typeof type === "string" ? type : null,
      placed: await sink.finish(),
      read: "streamed",
    };
  } catch (error) {
    await sink.abort();
    throw error;
  }
}
