// Splits one JSON object, arriving as bytes in chunks, into its top-level members without parsing
// it whole: a large member's value passes through as the bytes it arrived as (a 50 MB `output` on
// its way to R2), small ones are kept and parsed, the rest are scanned past. Only the structure is
// checked (strings, brackets, commas and colons between members); what is inside a value is not
// validated beyond that. npm's streaming JSON parsers turn every string into a JS string, which for
// a text output of 50 MB is the whole output in memory: this is why it is written here.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/** A key longer than this is no key the caller asked for: it is scanned past, not collected. */
const MAX_KEY_BYTES = 256;

const isSpace = (byte: number) => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;

export class JsonSplitError extends Error {}

/** What to do with a member's value. */
export type MemberHandling =
  /** Passed through: write() returns its bytes, piece by piece, as they arrive. */
  | { stream: true }
  /** Collected (at most `maxBytes`, else JsonSplitError) and parsed when the object ends. */
  | { keep: true; maxBytes: number };

/** Bytes of a streamed member's value, as write() found them (a view into the chunk given). */
export interface MemberPiece {
  key: string;
  bytes: Uint8Array;
}

type State = "start" | "key_or_end" | "key" | "colon" | "value_start" | "value" | "comma_or_end" | "end";

export class JsonObjectSplitter {
  private state: State = "start";
  /** Byte offset of the current chunk's start in the whole input (for error messages). */
  private offset = 0;
  private membersSeen = 0;
  // The current key, collected as raw bytes (escapes and all) until its closing quote.
  private keyBytes: number[] = [];
  private keyTooLong = false;
  private key = "";
  private handling: MemberHandling | undefined;
  // Inside a value: string state, nesting (brackets still open) and whether it is a bare scalar.
  private inString = false;
  private escaped = false;
  private open: number[] = [];
  private scalar = false;
  private keptPieces: Uint8Array[] = [];
  private keptBytes = 0;
  private readonly kept = new Map<string, unknown>();
  private readonly handled = new Set<string>();

  private readonly members: Record<string, MemberHandling>;

  constructor(members: Record<string, MemberHandling>) {
    this.members = members;
  }

  /** Whether every member to keep has been kept and none is streamed: the rest can go unread. */
  get settled(): boolean {
    return Object.entries(this.members).every(([key, h]) => "keep" in h && this.kept.has(key));
  }

  /** Whether the object has ended (its closing brace seen). */
  get ended(): boolean {
    return this.state === "end";
  }

  /** The kept members' values, parsed, by key (a member absent from the object is absent here). */
  keptValues(): ReadonlyMap<string, unknown> {
    return this.kept;
  }

  /** Feeds the next chunk; returns the streamed members' bytes found in it, in order. */
  write(chunk: Uint8Array): MemberPiece[] {
    const pieces: MemberPiece[] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === "key") {
        i = this.scanKey(chunk, i);
        continue;
      }
      if (this.state === "value") {
        const from = i;
        i = this.scanValue(chunk, i);
        if (i > from) this.take(chunk.subarray(from, i), pieces);
        // scanValue moved the state on if the value ended in this chunk (TypeScript cannot see that).
        const ended = (this.state as State) === "comma_or_end";
        if (ended && this.handling && "keep" in this.handling) this.keepValue();
        continue;
      }
      const byte = chunk[i] as number;
      if (isSpace(byte)) {
        i++;
        continue;
      }
      switch (this.state) {
        case "start":
          if (byte !== OPEN_OBJECT) this.fail(i, "a JSON object");
          this.state = "key_or_end";
          i++;
          break;
        case "key_or_end":
          if (byte === CLOSE_OBJECT && this.membersSeen === 0) {
            this.state = "end";
          } else if (byte === QUOTE) {
            this.keyBytes = [];
            this.keyTooLong = false;
            this.escaped = false;
            this.state = "key";
          } else {
            this.fail(i, "a key");
          }
          i++;
          break;
        case "colon":
          if (byte !== COLON) this.fail(i, "':'");
          this.state = "value_start";
          i++;
          break;
        case "value_start":
          // The value's first byte is scanned (and taken) with the rest of it.
          this.startValue(byte, i);
          break;
        case "comma_or_end":
          if (byte === COMMA) this.state = "key_or_end";
          else if (byte === CLOSE_OBJECT) this.state = "end";
          else this.fail(i, "',' or '}'");
          i++;
          break;
        case "end":
          this.fail(i, "nothing after the object");
      }
    }
    this.offset += n;
    return pieces;
  }

  /** Call after the last chunk: throws unless the object ended. */
  end(): void {
    if (this.state !== "end") throw new JsonSplitError(`The JSON ends early, after ${this.offset} bytes.`);
  }

  private startValue(byte: number, at: number) {
    if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY || byte === COMMA || byte === COLON)
      this.fail(at, "a value");
    this.handling = Object.hasOwn(this.members, this.key) ? this.members[this.key] : undefined;
    if (this.handling) {
      // A member given twice would be streamed twice, end to end: not one JSON value.
      if (this.handled.has(this.key)) this.fail(at, `"${this.key}" only once`);
      this.handled.add(this.key);
    }
    this.keptPieces = [];
    this.keptBytes = 0;
    this.open = [];
    this.inString = false;
    this.escaped = false;
    // A number or a literal (true, false, null): it ends at the next comma, brace or space.
    this.scalar = byte !== QUOTE && byte !== OPEN_OBJECT && byte !== OPEN_ARRAY;
    this.state = "value";
  }

  /** Scans a key's bytes from `i`; returns where it stopped (after the closing quote, or the chunk's end). */
  private scanKey(chunk: Uint8Array, i: number): number {
    const start = i;
    const end = this.scanString(chunk, i);
    const closed = !this.inString;
    // Without the closing quote.
    const upTo = closed ? end - 1 : end;
    if (!this.keyTooLong) {
      if (this.keyBytes.length + (upTo - start) > MAX_KEY_BYTES) this.keyTooLong = true;
      else for (let j = start; j < upTo; j++) this.keyBytes.push(chunk[j] as number);
    }
    if (closed) {
      this.key = this.keyTooLong ? "" : decodeKey(this.keyBytes);
      this.membersSeen++;
      this.state = "colon";
    }
    return end;
  }

  /**
   * Scans a string from `i` (just after its opening quote, or where the last chunk left off);
   * returns the index after its closing quote (inString turns false) or the chunk's length.
   * indexOf does the searching, so a long string costs native scans, not a loop per byte.
   */
  private scanString(chunk: Uint8Array, i: number): number {
    this.inString = true;
    if (this.escaped) {
      this.escaped = false;
      i++;
    }
    let quote = -2;
    let backslash = -2;
    while (i < chunk.length) {
      if (quote !== -1 && quote < i) quote = chunk.indexOf(QUOTE, i);
      if (backslash !== -1 && backslash < i) backslash = chunk.indexOf(BACKSLASH, i);
      if (backslash !== -1 && (quote === -1 || backslash < quote)) {
        // An escape: the byte after the backslash is never the string's end.
        if (backslash + 1 >= chunk.length) {
          this.escaped = true;
          return chunk.length;
        }
        i = backslash + 2;
        continue;
      }
      if (quote === -1) return chunk.length;
      this.inString = false;
      return quote + 1;
    }
    return i;
  }

  /** Scans a value from `i`; returns where it stopped: its end (state moves on) or the chunk's end. */
  private scanValue(chunk: Uint8Array, i: number): number {
    const n = chunk.length;
    while (i < n) {
      if (this.inString) {
        i = this.scanString(chunk, i);
        if (!this.inString && this.open.length === 0) return this.valueEnded(i);
        continue;
      }
      const byte = chunk[i] as number;
      if (this.scalar) {
        if (byte === COMMA || byte === CLOSE_OBJECT || isSpace(byte)) return this.valueEnded(i);
        if (byte === QUOTE || byte === OPEN_OBJECT || byte === OPEN_ARRAY || byte === CLOSE_ARRAY)
          this.fail(i, "the end of a number or literal");
        i++;
        continue;
      }
      if (byte === QUOTE) {
        // A string opens: the value's own, or one inside it.
        this.inString = true;
        i++;
        continue;
      }
      if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) this.open.push(byte);
      else if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) {
        const opened = this.open.pop();
        if (opened !== (byte === CLOSE_OBJECT ? OPEN_OBJECT : OPEN_ARRAY))
          this.fail(i, opened === undefined ? "a value" : "the matching bracket");
        if (this.open.length === 0) return this.valueEnded(i + 1);
      }
      i++;
    }
    return i;
  }

  private valueEnded(at: number): number {
    this.state = "comma_or_end";
    return at;
  }

  private take(bytes: Uint8Array, pieces: MemberPiece[]) {
    if (!this.handling) return;
    if ("stream" in this.handling) {
      pieces.push({ key: this.key, bytes });
      return;
    }
    this.keptBytes += bytes.length;
    if (this.keptBytes > this.handling.maxBytes)
      throw new JsonSplitError(`The member "${this.key}" is over ${this.handling.maxBytes} bytes.`);
    // A copy: the chunk is the caller's and may be reused.
    this.keptPieces.push(bytes.slice());
  }

  private keepValue() {
    const bytes = new Uint8Array(this.keptBytes);
    let at = 0;
    for (const piece of this.keptPieces) {
      bytes.set(piece, at);
      at += piece.length;
    }
    this.keptPieces = [];
    try {
      this.kept.set(this.key, JSON.parse(new TextDecoder().decode(bytes)));
    } catch (error) {
      throw new JsonSplitError(`The member "${this.key}" is not valid JSON: ${(error as Error).message}`);
    }
  }

  private fail(at: number, expected: string): never {
    throw new JsonSplitError(`Expected ${expected} at byte ${this.offset + at} of the JSON.`);
  }
}

function decodeKey(bytes: number[]): string {
  try {
    return JSON.parse(`"${new TextDecoder().decode(new Uint8Array(bytes))}"`) as string;
  } catch {
    throw new JsonSplitError("A key of the JSON object is not a valid string.");
  }
}
