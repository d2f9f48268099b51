// The streaming splitter of /result bodies (src/json-split.ts): whatever the chunk boundaries, the
// streamed member's bytes are exactly its value as sent, and kept members parse to their values.
import { describe, expect, it } from "vitest";
import { JsonObjectSplitter, JsonSplitError, type MemberHandling } from "../../src/json-split";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const RESULT_MEMBERS: Record<string, MemberHandling> = {
  run: { keep: true, maxBytes: 10_000 },
  output: { stream: true },
};

/** Splits `text` fed in `chunks`; returns the streamed `output` (as text) and the kept values. */
function split(chunks: Uint8Array[], members: Record<string, MemberHandling> = RESULT_MEMBERS) {
  const splitter = new JsonObjectSplitter(members);
  const streamed: Uint8Array[] = [];
  for (const chunk of chunks) for (const piece of splitter.write(chunk)) streamed.push(piece.bytes.slice());
  splitter.end();
  const total = streamed.reduce((n, p) => n + p.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const piece of streamed) {
    joined.set(piece, at);
    at += piece.length;
  }
  return { output: decoder.decode(joined), kept: Object.fromEntries(splitter.keptValues()) };
}

/** The bytes of `text` cut at the given offsets. */
function cut(text: string, at: number[]): Uint8Array[] {
  const bytes = encoder.encode(text);
  const bounds = [0, ...at, bytes.length];
  return bounds.slice(1).map((end, i) => bytes.subarray(bounds[i], end));
}

// Everything a boundary can fall inside: escaped quotes and backslashes (`\\"` ends a string,
// `\"` does not), brackets and braces inside strings, \u escapes, multi-byte UTF-8, whitespace
// between tokens, numbers and literals as values, a key with an escape, and members before and
// after the ones asked for.
const OUTPUT_TEXT = String.raw`{ "type" : "json", "content": {"say \"hi\"": "a } ] { [ , : in a string", "path": "C:\\dir\\", "nested": [[1, -2.5e3, true, null], {"k": "v\\\"q"}], "é": "naïve café 日本 😀", "u": "\u0022\u005c"}, "basis": [] }`;
const RUN = { run_id: "trun_1", status: "completed", warnings: [{ message: 'w "1"' }], metadata: { n: 1 } };
const BODY = `{"before": {"x": [1, "}"]}, "run" : ${JSON.stringify(RUN, null, 1)},\n "output":${OUTPUT_TEXT}, "after": 12.5, "flag": false}`;

describe("splitting a JSON object as it streams", () => {
  it("passes the streamed member through byte for byte and keeps the kept one, whole", () => {
    const { output, kept } = split(cut(BODY, []));
    expect(output).toBe(OUTPUT_TEXT);
    expect(JSON.parse(output)).toEqual(JSON.parse(OUTPUT_TEXT));
    expect(kept).toEqual({ run: RUN });
  });

  it("gives the same result for a boundary at every byte", () => {
    const length = encoder.encode(BODY).length;
    for (let at = 1; at < length; at++) {
      expect(split(cut(BODY, [at])), `cut at byte ${at}`).toEqual({
        output: OUTPUT_TEXT,
        kept: { run: RUN },
      });
    }
  });

  it("gives the same result fed a byte at a time, and with two boundaries everywhere near escapes", () => {
    const bytes = encoder.encode(BODY);
    const oneByOne = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
    expect(split(oneByOne)).toEqual({ output: OUTPUT_TEXT, kept: { run: RUN } });
    // Two boundaries around every backslash: an escape split from what it escapes, alone in a chunk.
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0x5c) continue;
      for (const [a, b] of [
        [i, i + 1],
        [i + 1, i + 2],
        [i, i + 2],
      ] as const) {
        expect(split(cut(BODY, [a, b])), `cut at ${a}, ${b}`).toEqual({
          output: OUTPUT_TEXT,
          kept: { run: RUN },
        });
      }
    }
  });

  it("matches JSON.parse over random documents and random chunkings", () => {
    let seed = 13;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pieces = ['"', "\\", "}", "{", "[", "]", ",", ":", " ", "a", "é", "😀", "\n", "\u0000"];
    const text = () =>
      Array.from(
        { length: Math.floor(random() * 12) },
        () => pieces[Math.floor(random() * pieces.length)],
      ).join("");
    const value = (depth: number): unknown => {
      const kind = Math.floor(random() * (depth > 3 ? 3 : 5));
      if (kind === 0) return text();
      if (kind === 1) return Math.round(random() * 1e6) / 100 - 5000;
      if (kind === 2) return [true, false, null][Math.floor(random() * 3)];
      if (kind === 3) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      return Object.fromEntries(
        Array.from({ length: Math.floor(random() * 4) }, () => [text(), value(depth + 1)]),
      );
    };
    for (let n = 0; n < 300; n++) {
      const output = { type: "json", content: value(0), basis: [value(1)] };
      const run = { run_id: text(), status: "completed", metadata: value(2) };
      const body =
        random() < 0.5
          ? JSON.stringify({ run, output })
          : JSON.stringify({ output, junk: value(0), run }, null, 2);
      const length = encoder.encode(body).length;
      const bounds = Array.from({ length: Math.floor(random() * 6) }, () =>
        Math.floor(random() * length),
      ).sort((a, b) => a - b);
      const { output: streamed, kept } = split(cut(body, bounds));
      expect(JSON.parse(streamed), body).toEqual(output);
      expect(kept.run).toEqual(run);
    }
  });

  it("streams a long string in big chunks without splitting it into bytes", () => {
    const content = `${"x".repeat(3_000_000)}\\"${"y".repeat(1_000_000)}`;
    const body = `{"run":{"status":"completed"},"output":{"content":"${content}","type":"text"}}`;
    const bytes = encoder.encode(body);
    const chunks = [];
    for (let at = 0; at < bytes.length; at += 65_536) chunks.push(bytes.subarray(at, at + 65_536));
    const splitter = new JsonObjectSplitter(RESULT_MEMBERS);
    let streamed = 0;
    let pieces = 0;
    for (const chunk of chunks) {
      for (const piece of splitter.write(chunk)) {
        streamed += piece.bytes.length;
        pieces++;
      }
    }
    splitter.end();
    expect(streamed).toBe(content.length + `{"content":"","type":"text"}`.length);
    // One piece per chunk: views into the chunks, never a copy per byte.
    expect(pieces).toBe(chunks.length);
  });

  it("reads only what it is asked for: a nested splitter settles once its member is kept", () => {
    const splitter = new JsonObjectSplitter({ type: { keep: true, maxBytes: 100 } });
    splitter.write(encoder.encode('{"basis": [{"a": "}"}], "type": "te'));
    expect(splitter.settled).toBe(false);
    splitter.write(encoder.encode('xt", "content": "unfinished'));
    expect(splitter.settled).toBe(true);
    expect(splitter.keptValues().get("type")).toBe("text");
  });

  it.each([
    ["not an object", '["run"]'],
    ["cut short in a string", '{"run": {}, "output": {"content": "abc'],
    ["cut short after a value", '{"run": {}, "output": {}'],
    ["a bracket that does not match", '{"output": {"a": [1, 2}}'],
    ["a closing bracket for nothing", '{"output": ]}'],
    ["a missing colon", '{"output" {}}'],
    ["a trailing comma", '{"output": {},}'],
    ["something after the object", '{"output": {}} {}'],
    ["a bare word as a key", "{output: {}}"],
    ["the streamed member twice", '{"output": {}, "output": {}}'],
    ["a kept member over its size", `{"run": "${"r".repeat(20_000)}", "output": {}}`],
    ["a kept member that is not JSON", '{"run": tru, "output": {}}'],
  ])("refuses %s", (_, body) => {
    expect(() => split(cut(body, [3]))).toThrow(JsonSplitError);
  });

  it("takes an empty object and scalar members", () => {
    expect(split(cut("{}", [1]))).toEqual({ output: "", kept: {} });
    expect(split(cut('{"run": -12.5e-3 , "output": "text"}', [9]))).toEqual({
      output: '"text"',
      kept: { run: -0.0125 },
    });
  });
});
