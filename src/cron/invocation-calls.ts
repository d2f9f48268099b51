// What one consumer invocation hands its work, counting every call as Cloudflare counts it against
// the invocation's subrequest limit: a D1 statement's run/all/first/raw, or one D1 batch (however
// many statements); an R2 operation; a call to Parallel; a callback POST. The consumer admits a message only while
// the calls already made plus every admitted message's worst case stay within SUBREQUEST_BUDGET.
//
// It also lets the consumer send statements together: between collect() and flush(), statements
// that are run are held and then sent as one D1 batch, one call (the takes of a whole batch).
import { type Env, readConfig } from "../env";
import { createParallelGateway, type ParallelGateway } from "../parallel/client";

export interface CallCount {
  calls: number;
}

interface Held {
  statement: D1PreparedStatement;
  settle: (result: D1Result) => void;
  fail: (error: unknown) => void;
}

export interface CollectingDatabase {
  db: D1Database;
  /** From now on statements run are held, to go out together at flush(). */
  collect(): void;
  /** Sends the held statements as one D1 batch (one call, one transaction) and answers each. */
  flush(): Promise<void>;
}

export function countingDatabase(db: D1Database, count: CallCount): CollectingDatabase {
  let held: Held[] | null = null;
  const originals = new WeakMap<object, D1PreparedStatement>();
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement => {
    const call = <T>(direct: () => Promise<T>, answer: (result: D1Result) => T): Promise<T> => {
      const holding = held;
      if (holding)
        return new Promise<T>((resolve, reject) =>
          holding.push({ statement, settle: (result) => resolve(answer(result)), fail: reject }),
        );
      count.calls++;
      return direct();
    };
    const firstOf = (result: D1Result, column?: string) => {
      const row = result.results[0] as Record<string, unknown> | undefined;
      if (!row) return null;
      return column === undefined ? row : (row[column] ?? null);
    };
    const wrapped = {
      bind: (...values: unknown[]) => wrap(statement.bind(...values)),
      first: (column?: string) =>
        call(
          () => (column === undefined ? statement.first() : statement.first(column)),
          (result) => firstOf(result, column),
        ),
      all: () =>
        call(
          () => statement.all(),
          (result) => result,
        ),
      run: () =>
        call(
          () => statement.run(),
          (result) => result,
        ),
      raw: (options?: { columnNames?: boolean }) => {
        count.calls++;
        return options?.columnNames ? statement.raw({ columnNames: true }) : statement.raw();
      },
    };
    originals.set(wrapped, statement);
    return wrapped as unknown as D1PreparedStatement;
  };
  const database = {
    prepare: (query: string) => wrap(db.prepare(query)),
    batch: <T = unknown>(statements: D1PreparedStatement[]) => {
      count.calls++;
      return db.batch<T>(statements.map((s) => originals.get(s) ?? s));
    },
    exec: (query: string) => {
      count.calls++;
      return db.exec(query);
    },
    withSession: (constraint?: D1SessionBookmark | D1SessionConstraint) => db.withSession(constraint),
    dump: () => db.dump(),
  };
  return {
    db: database as unknown as D1Database,
    collect: () => {
      held ??= [];
    },
    flush: async () => {
      const sending = held ?? [];
      held = null;
      if (sending.length === 0) return;
      count.calls++;
      try {
        const results = await db.batch(sending.map((h) => h.statement));
        sending.forEach((h, i) => {
          const result = results[i];
          if (result) h.settle(result);
          else h.fail(new Error("D1 batch answered fewer results than statements"));
        });
      } catch (error) {
        for (const h of sending) h.fail(error);
      }
    },
  };
}

/**
 * `target()`'s methods, each call counted; `target` is asked for on the first call (Parallel's client
 * needs its key). `nested` names methods whose answer is an object whose calls count too (an R2
 * multipart upload: each part and its completion is an R2 operation).
 */
function countingCalls<T extends object>(target: () => T, count: CallCount, nested: string[] = []): T {
  return new Proxy({} as T, {
    get(_, property) {
      const real = target();
      const value: unknown = Reflect.get(real, property, real);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        count.calls++;
        const answer = (value as (...a: unknown[]) => unknown).apply(real, args);
        if (!nested.includes(String(property))) return answer;
        return (answer as Promise<object>).then((inner) => countingCalls(() => inner, count));
      };
    },
  });
}

/** The bindings an invocation's work gets, each call counted in `count`. */
export function countedBindings(env: Env, count: CallCount) {
  const database = countingDatabase(env.DB, count);
  return {
    env: {
      ...env,
      DB: database.db,
      OUTPUTS: countingCalls(() => env.OUTPUTS, count, ["createMultipartUpload"]),
    },
    // Parallel's client makes one request a call (maxRetries 0).
    parallel: countingCalls<ParallelGateway>(() => createParallelGateway(readConfig(env)), count),
    // Callback POSTs (services/delivery-send.ts); redirects are not followed, so one request each.
    fetch: ((input, init) => {
      count.calls++;
      return fetch(input, init);
    }) as typeof fetch,
    database,
  };
}
