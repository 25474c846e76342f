import { Problem } from '../platform/errors.js';

/** How fast an upload must arrive (PARITY_INGEST_MIN_RATE, PARITY_INGEST_MAX_SECONDS). */
export interface Pace {
  /** Bytes per second, averaged over `windowMs`; 0 turns the check off. */
  minBytesPerSecond: number;
  windowMs: number;
  /** The longest an upload may take, start to end. */
  maxMs: number;
}

/**
 * The body, cut off with a 408 when it arrives slower than the minimum rate over the last
 * window (once a window has passed) or takes longer than the maximum: a client trickling a
 * large declared body would otherwise hold a writer slot, and with enough connections every
 * slot, for as long as it likes. The check runs on a timer, not only on chunks, so a client that
 * sends nothing at all is cut off too. The connection is left for the error response (which
 * closes it); nothing of the batch lands.
 */
export async function* paced(body: AsyncIterable<Buffer>, pace: Pace, now = () => Date.now()): AsyncGenerator<Buffer> {
  const it = body[Symbol.asyncIterator]();
  // The clock that counts is the time spent waiting for the client: while the room itself is
  // busy with a chunk (parsing, writing), the client is not to blame.
  let waited = 0;
  // (waited, bytes received so far): the samples of the last window, oldest first.
  const samples: [number, number][] = [[0, 0]];
  let total = 0;
  const tick = Math.max(100, Math.min(1000, pace.windowMs / 10));
  let pending: Promise<IteratorResult<Buffer>> | undefined;
  try {
    while (true) {
      pending ??= it.next();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'tick'>((r) => (timer = setTimeout(() => r('tick'), tick)));
      const t0 = now();
      const next = await Promise.race([pending, timeout]);
      clearTimeout(timer);
      waited += now() - t0;
      if (next !== 'tick') {
        pending = undefined;
        if (next.done) return;
        total += next.value.length;
        samples.push([waited, total]);
      }
      if (waited > pace.maxMs)
        throw tooSlow(`the upload took longer than ${Math.round(pace.maxMs / 1000)} s; send smaller batches`);
      // samples[0]: the last sample at or before the window's start (nothing arrived in between).
      while (samples.length > 1 && samples[1]![0] <= waited - pace.windowMs) samples.shift();
      if (pace.minBytesPerSecond > 0 && waited >= pace.windowMs) {
        const rate = ((total - samples[0]![1]) * 1000) / pace.windowMs;
        if (rate < pace.minBytesPerSecond)
          throw tooSlow(
            `the body arrived slower than ${Math.round(pace.minBytesPerSecond / 1024)} KB/s over ${Math.round(pace.windowMs / 1000)} s`,
          );
      }
      if (next !== 'tick') yield next.value;
    }
  } finally {
    // Leave the source alone if a read is still pending: the error response closes the connection.
    if (!pending) await it.return?.();
  }
}

function tooSlow(detail: string): Problem {
  return new Problem(408, 'Request Timeout', `${detail}; nothing of the batch landed`, { field: 'body' });
}
