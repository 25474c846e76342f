/**
 * What every benchmark prints over its rounds (issue #17): the median and the min / median / max
 * of a measure taken once per round.
 */

/** The median of `xs` (the upper middle value when their number is even). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** The median of the rounds' values, or undefined when a round has none. */
export function medianOf(xs: readonly (number | undefined)[]): number | undefined {
  return xs.length && xs.every((x) => x !== undefined) ? median(xs as number[]) : undefined;
}

/** min, median and max of the rounds' values, each formatted by `f`, joined by `sep` (n/a when a round has none). */
export function spread(xs: readonly (number | undefined)[], f: (x: number) => string, sep = ' | '): string {
  const m = medianOf(xs);
  if (m === undefined) return ['n/a', 'n/a', 'n/a'].join(sep);
  const s = [...(xs as number[])].sort((a, b) => a - b);
  return [f(s[0]!), f(m), f(s.at(-1)!)].join(sep);
}
