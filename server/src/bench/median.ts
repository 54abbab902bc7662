/** The middle value of `v` (the upper one of the two middles when even); the benchmarks' figure of a set of runs. */
export const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
