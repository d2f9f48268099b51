// The one catalogue of Parallel processors. Latency ranges and prices are from Parallel's
// "Choose a processor" and pricing pages (see ../shared/reference/parallel-task-api.md §8).
// The relay uses `maxLatencyMs` to time its first poll and a run's expiry; the simulator draws
// run durations from the same ranges. This file has no imports so that Node (the simulator)
// and workerd (the relay) can both load it as is.

export interface Processor {
  name: string;
  minLatencyMs: number;
  maxLatencyMs: number;
  usdPer1000Runs: number;
  /** Parallel's guidance on how many output fields the processor handles well. */
  maxFields: number;
  /** Where the figures are the seed's guess, not a documented range. */
  estimated?: true;
}

const s = 1_000;
const min = 60 * s;
const h = 60 * min;

const standard: Processor[] = [
  { name: "lite", minLatencyMs: 10 * s, maxLatencyMs: 60 * s, usdPer1000Runs: 5, maxFields: 2 },
  { name: "base", minLatencyMs: 15 * s, maxLatencyMs: 100 * s, usdPer1000Runs: 10, maxFields: 5 },
  { name: "core", minLatencyMs: 60 * s, maxLatencyMs: 5 * min, usdPer1000Runs: 25, maxFields: 10 },
  { name: "core2x", minLatencyMs: 60 * s, maxLatencyMs: 10 * min, usdPer1000Runs: 50, maxFields: 10 },
  { name: "pro", minLatencyMs: 2 * min, maxLatencyMs: 10 * min, usdPer1000Runs: 100, maxFields: 20 },
  { name: "ultra", minLatencyMs: 5 * min, maxLatencyMs: 25 * min, usdPer1000Runs: 300, maxFields: 20 },
  { name: "ultra2x", minLatencyMs: 5 * min, maxLatencyMs: 50 * min, usdPer1000Runs: 600, maxFields: 25 },
  { name: "ultra4x", minLatencyMs: 5 * min, maxLatencyMs: 90 * min, usdPer1000Runs: 1200, maxFields: 25 },
  { name: "ultra8x", minLatencyMs: 5 * min, maxLatencyMs: 2 * h, usdPer1000Runs: 2400, maxFields: 25 },
];

// "-fast" variants cost the same as their standard counterparts and run 2-5x faster.
const fastLatency: Record<string, [number, number]> = {
  lite: [10 * s, 20 * s],
  base: [15 * s, 50 * s],
  core: [15 * s, 100 * s],
  core2x: [15 * s, 3 * min],
  pro: [30 * s, 5 * min],
  ultra: [1 * min, 10 * min],
  ultra2x: [1 * min, 20 * min],
  ultra4x: [1 * min, 40 * min],
  ultra8x: [1 * min, 1 * h],
};

const fast: Processor[] = standard.map((p) => {
  const [minLatencyMs, maxLatencyMs] = fastLatency[p.name] ?? [p.minLatencyMs, p.maxLatencyMs];
  return { ...p, name: `${p.name}-fast`, minLatencyMs, maxLatencyMs };
});

// Named by the seed document; Parallel publishes no latency for them, so these borrow the
// range of the nearest documented tier.
const special: Processor[] = [
  {
    name: "vision",
    minLatencyMs: 60 * s,
    maxLatencyMs: 5 * min,
    usdPer1000Runs: 25,
    maxFields: 10,
    estimated: true,
  },
  {
    name: "vision_pro",
    minLatencyMs: 2 * min,
    maxLatencyMs: 10 * min,
    usdPer1000Runs: 100,
    maxFields: 20,
    estimated: true,
  },
  {
    name: "deep",
    minLatencyMs: 5 * min,
    maxLatencyMs: 25 * min,
    usdPer1000Runs: 300,
    maxFields: 20,
    estimated: true,
  },
  {
    name: "deepv2",
    minLatencyMs: 5 * min,
    maxLatencyMs: 25 * min,
    usdPer1000Runs: 300,
    maxFields: 20,
    estimated: true,
  },
];

export const PROCESSORS: ReadonlyMap<string, Processor> = new Map(
  [...standard, ...fast, ...special].map((p) => [p.name, p]),
);

export function findProcessor(name: string): Processor | undefined {
  return PROCESSORS.get(name);
}

export const PROCESSOR_NAMES: readonly string[] = [...PROCESSORS.keys()];
