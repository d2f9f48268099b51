// workerd provides node:async_hooks under nodejs_compat; the Worker's types do not declare it, and
// the tests need only this much of it (d1-limits.ts counts one invocation's D1 calls).
declare module "node:async_hooks" {
  export class AsyncLocalStorage<T> {
    run<R>(store: T, callback: () => R): R;
    getStore(): T | undefined;
  }
}
