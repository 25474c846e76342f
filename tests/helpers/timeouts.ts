/**
 * Timeouts are sized for the slowest machine the suite supports: two cores, one of them kept
 * busy by another process, PGlite (no DATABASE_URL), each limit about three times what the
 * slowest test or hook took there. They catch hangs; they are not performance assertions.
 * PARITY_TEST_TIMEOUT_SCALE multiplies every one of them (a slower or overloaded machine, a
 * profiler, a debugger).
 */
const raw = Number(process.env['PARITY_TEST_TIMEOUT_SCALE'] ?? '1');
const scale = Number.isFinite(raw) && raw > 0 ? raw : 1;

/** `ms` scaled by PARITY_TEST_TIMEOUT_SCALE. */
export const timeout = (ms: number): number => Math.round(ms * scale);
