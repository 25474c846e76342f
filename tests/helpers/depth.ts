/**
 * How deep the randomised and volume suites go. `full` in CI (CI=true) and with
 * PARITY_TEST_DEPTH=full: every random case and the full volumes, as the issues ask. `quick`
 * elsewhere (a laptop's `npm test`): the same tests and assertions on fewer random cases and
 * smaller volumes, so the whole suite fits in minutes on two busy cores. PARITY_TEST_DEPTH=quick
 * forces the quick depth in CI as well. Each suite's own variable (PARITY_PROPERTY_RUNS, …)
 * overrides both.
 */
const asked = process.env['PARITY_TEST_DEPTH'];
export const fullDepth = asked === 'full' || (asked !== 'quick' && process.env['CI'] === 'true');

/** `quick` or `full`, by the depth of this run. */
export const byDepth = <T>(quick: T, full: T): T => (fullDepth ? full : quick);

/** A count from the environment variable `name`, else the depth's. */
export function runs(name: string, quick: number, full: number): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : byDepth(quick, full);
}
