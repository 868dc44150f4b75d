// Linear scales and "nice" tick values for the SVG charts.

export type Scale = (value: number) => number;

export function linearScale(
  domain: readonly [number, number],
  range: readonly [number, number],
): Scale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  return (value) => r0 + ((value - d0) / span) * (r1 - r0);
}

/** About `count` round tick values covering [min, max] (1, 2 or 5 times a power of ten). */
export function niceTicks(min: number, max: number, count = 4): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0];
  if (max <= min) max = min + 1;
  const rough = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => rough <= s) ?? 10 * power;
  const ticks: number[] = [];
  for (let t = Math.floor(min / step) * step; t <= max + step * 1e-9; t += step) {
    ticks.push(Number(t.toFixed(10)));
  }
  if (ticks[ticks.length - 1]! < max) ticks.push(ticks[ticks.length - 1]! + step);
  return ticks;
}

/** The top of a value axis that starts at zero: the smallest nice tick not below max. */
export function niceMax(max: number, count = 4): number {
  const ticks = niceTicks(0, max > 0 ? max : 1, count);
  return ticks[ticks.length - 1] ?? 1;
}

/** Evenly spaced time ticks over [start, end] in ms. */
export function timeTicks(start: number, end: number, count = 5): number[] {
  if (end <= start) return [start];
  const steps = [
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
  ];
  const rough = (end - start) / count;
  const step = steps.find((s) => s >= rough) ?? Math.ceil(rough / 86_400_000) * 86_400_000;
  const offset = new Date(start).getTimezoneOffset() * 60_000;
  const ticks: number[] = [];
  let t = Math.ceil((start - offset) / step) * step + offset;
  for (; t <= end; t += step) ticks.push(t);
  return ticks;
}
