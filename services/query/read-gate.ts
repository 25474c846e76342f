import { Problem } from '../platform/errors.js';

/** Who a read is for: a partner, a partnerless token, an address, or `system` for the room's own reads. */
export type ReadCaller = string;
export const SYSTEM_READ: ReadCaller = 'system';

/**
 * The reads that go to the points (an old `?snapshot=`, a period the rollups do not hold yet, a
 * patch of the periods batches moved): each takes DuckDB's threads and up to its whole memory
 * pool for a fraction of a second to seconds. Unbounded, one analyst's loop over old snapshots
 * on four connections took globex's 10-point pushes from 50 ms to 3–11 s and ran DuckDB out of
 * memory (a red team's finding). So at most `slots` run at once; the others wait, and a slot
 * that frees goes to the caller whose turn it is (round robin over the callers waiting, each
 * caller's reads in order, never to the caller whose read just ended while another waits), so
 * one reader's flood delays another's read by the reads of it already running at most. A caller
 * with `perCaller` reads waiting already gets 429 with Retry-After; the room's own reads wait like
 * any caller's and are never refused.
 */
export class ReadGate {
  #running = 0;
  /** Waiting reads by caller, in turn order (a Map keeps insertion order). */
  readonly #waiting = new Map<ReadCaller, (() => void)[]>();
  /** Reads refused since start (429). */
  refused = 0;

  constructor(
    readonly slots: number,
    readonly perCaller = 32,
    /** Reads waiting in all, past which a caller's read is a 503 (the room's own still wait). */
    readonly maxWaiting = 1024,
  ) {}

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    let n = 0;
    for (const q of this.#waiting.values()) n += q.length;
    return n;
  }

  async run<T>(caller: ReadCaller, read: () => Promise<T>): Promise<T> {
    if (this.#running < this.slots && this.#waiting.size === 0) this.#running++;
    else {
      const queue = this.#waiting.get(caller) ?? [];
      if (caller !== SYSTEM_READ && this.waiting >= this.maxWaiting) {
        this.refused++;
        throw new Problem(
          503,
          'Service Unavailable',
          `${this.waiting} reads from the stored data are waiting already; retry shortly`,
          {},
          { 'retry-after': '2' },
        );
      }
      if (caller !== SYSTEM_READ && queue.length >= this.perCaller) {
        this.refused++;
        throw new Problem(
          429,
          'Too Many Requests',
          `${queue.length} of your partner's reads from the stored data are waiting already; retry once they are answered`,
          {},
          { 'retry-after': '1' },
        );
      }
      // The slot is handed over by the read that ends (#next): #running stays as it is.
      await new Promise<void>((resolve) => {
        queue.push(resolve);
        if (!this.#waiting.has(caller)) this.#waiting.set(caller, queue);
      });
    }
    try {
      return await read();
    } finally {
      this.#next(caller);
    }
  }

  /**
   * Hands the slot of `ended`'s read to the next caller in turn (another caller than `ended`
   * when one waits: it just had a turn), or frees it.
   */
  #next(ended: ReadCaller): void {
    let pick: [ReadCaller, (() => void)[]] | undefined;
    for (const entry of this.#waiting) {
      pick ??= entry;
      if (entry[0] !== ended) {
        pick = entry;
        break;
      }
    }
    if (!pick) {
      this.#running--;
      return;
    }
    const [caller, queue] = pick;
    const resolve = queue.shift()!;
    // To the back of the turn order, if it has more waiting.
    this.#waiting.delete(caller);
    if (queue.length > 0) this.#waiting.set(caller, queue);
    resolve();
  }
}

/**
 * The caller a request's reads go under: its partner (every token of it: an admin mints tokens at
 * will, and forty of them once took forty turns before another partner's one, a red team's
 * finding), a partnerless token (steering, the operator), or, without one (a published KPI), its
 * address.
 */
export function readCaller(req: {
  principal?: { tokenId: string; partnerId: string | null } | null;
  ip: string;
}): ReadCaller {
  const p = req.principal;
  if (!p) return `address ${req.ip}`;
  return p.partnerId !== null ? `partner ${p.partnerId}` : `token ${p.tokenId}`;
}
