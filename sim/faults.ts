// Seeded randomness. Every random decision the simulator makes — fault draws, run durations,
// outputs — is a pure function of SIM_SEED, a label and an index (a run's sequence number, the
// n-th call to an endpoint), so a given seed replays the same decisions whatever else is going
// on. Run ids and webhook event ids are deliberately NOT seeded: they must stay unique across
// restarts because the relay stores them.

import type { SimConfig } from "./config.ts";
import { CREATE_ENDPOINTS, type EndpointKey } from "./endpoints.ts";

function fmix32(input: number): number {
  let h = input;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units, finalised with murmur3's mixer; seeded. */
export function hashString(text: string, seed: number): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

/** A uniform number in [0, 1) fixed by (seed, label, index). */
export function unitDraw(seed: number, label: string, index: number): number {
  return hashString(`${label}#${index}`, seed) / 2 ** 32;
}

/** mulberry32: small, fast, good enough for simulated content. */
export class Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }

  /** An integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly [T, ...T[]]): T;
  pick<T>(items: readonly T[]): T | undefined;
  pick<T>(items: readonly T[]): T | undefined {
    return items[Math.floor(this.next() * items.length)];
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }
}

export type ApiFault = { kind: "error"; status: 500 | 502 | 503 } | { kind: "throttle" };

const ERROR_STATUSES = [500, 502, 503] as const;

/** Fault decisions, read against the live configuration at the moment they are made. */
export class Faults {
  readonly #config: () => SimConfig;

  constructor(config: () => SimConfig) {
    this.#config = config;
  }

  draw(label: string, index: number): number {
    return unitDraw(this.#config().seed, label, index);
  }

  happens(label: string, index: number, rate: number): boolean {
    return rate > 0 && this.draw(label, index) < rate;
  }

  /** Decides whether the `callIndex`-th call to `endpoint` fails on purpose. */
  apiFault(endpoint: EndpointKey, callIndex: number): ApiFault | null {
    const config = this.#config();
    const errorRate = config.error_rate_by_endpoint[endpoint] ?? config.error_rate;
    if (this.happens(`error ${endpoint}`, callIndex, errorRate)) {
      const pick = Math.floor(this.draw(`error-status ${endpoint}`, callIndex) * ERROR_STATUSES.length);
      return { kind: "error", status: ERROR_STATUSES[pick] ?? 500 };
    }
    const throttleRate =
      config.throttle_rate_by_endpoint[endpoint] ??
      (CREATE_ENDPOINTS.has(endpoint) ? config.throttle_rate : 0);
    if (this.happens(`throttle ${endpoint}`, callIndex, throttleRate)) return { kind: "throttle" };
    return null;
  }

  /** Extra response latency for the `callIndex`-th call to `endpoint`, in wall-clock ms. */
  latencyMs(endpoint: EndpointKey, callIndex: number): number {
    const config = this.#config();
    if (config.latency_ms === 0 && config.latency_jitter_ms === 0) return 0;
    const jitter = Math.floor(this.draw(`latency ${endpoint}`, callIndex) * (config.latency_jitter_ms + 1));
    return config.latency_ms + jitter;
  }
}
