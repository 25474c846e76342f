import { retryPause } from './backoff.js';

/**
 * Runs background work beside ingest (band evaluation, rollup maintenance): requests made
 * while a run is in progress coalesce into the next run, and under sustained ingest (batches
 * landed during the last run, or landing now) a run that took d ms is followed by a pause of
 * DUTY·d ms (at most MAX_GAP_MS), so the work keeps to a bounded share of the machine. An idle
 * room runs the work at once. The cap keeps the work prompt, but a run longer than
 * MAX_GAP_MS / DUTY then takes a larger share; with `maxShare` the pause is at least what keeps
 * the work to that share (d·(1/maxShare − 1)), promptness giving way.
 *
 * With `retry`, a run that failed is tried again by itself after a pause that doubles with each
 * failure in a row (from `firstMs` to `maxMs`), so work that fails for a passing reason (DuckDB
 * short of memory while a large batch lands, say) does not wait for the next request to come.
 */
export class BackgroundLoop {
  static readonly DUTY = 12;
  static readonly MAX_GAP_MS = 1_500;

  /** Runs so far, the last one's duration, and runs that failed since start. */
  readonly stats = { runs: 0, lastMs: 0, failures: 0 };
  /** Failed runs in a row: the retry's pause doubles with each. */
  #failedInARow = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #requested = false;
  #running: Promise<void> | null = null;
  #inRun = false;
  #requestsDuringRun = 0;
  #nextStart = 0;
  #stopped = false;

  constructor(
    private readonly work: () => Promise<void>,
    private readonly ingestBusy: () => boolean,
    /** Told of a failed run, and in how many ms it is tried again (undefined: not by itself). */
    private readonly onError: (err: unknown, retryInMs: number | undefined) => void,
    private readonly opts: { maxShare?: number; retry?: { firstMs: number; maxMs: number } } = {},
  ) {}

  /** The pause after a run of `took` ms under sustained ingest. */
  gapAfter(took: number): number {
    const gap = Math.min(BackgroundLoop.MAX_GAP_MS, BackgroundLoop.DUTY * took);
    const share = this.opts.maxShare;
    return share === undefined ? gap : Math.max(gap, took * (1 / share - 1));
  }

  /** The pause before a failed run is tried again, after `failedInARow` failures (≥ 1). */
  retryAfter(failedInARow: number): number | undefined {
    return this.opts.retry && retryPause(failedInARow, this.opts.retry);
  }

  /**
   * Asks for a run. A request made while a run is under way counts as sustained ingest (the
   * next run waits its pause), unless it is `scheduled` (a timer's, not a batch's).
   */
  request(opts: { scheduled?: boolean } = {}): void {
    if (this.#stopped) return;
    if (this.#inRun && !opts.scheduled) this.#requestsDuringRun++;
    this.#requested = true;
    this.#start();
  }

  #start(): void {
    if (this.#running) return;
    this.#running = this.#loop().finally(() => {
      this.#running = null;
      // A request that came after the loop's last check, before this ran, is not lost.
      if (this.#requested && !this.#stopped) this.#start();
    });
  }

  /** Whether a run is under way or asked for (a failed run's retry, waiting on its timer, is not). */
  get busy(): boolean {
    return this.#running !== null || this.#requested;
  }

  /** Resolves once nothing is requested or running. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Stops after the run under way, if any: a pause before the next one is cut short. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#requested = false;
    clearTimeout(this.#retryTimer);
    this.#wake?.();
    await this.idle();
  }

  /** Takes requests again after stop() (an engine started again); no pause carries over. */
  resume(): void {
    this.#stopped = false;
    this.#nextStart = 0;
    this.#failedInARow = 0;
  }

  /** After a failed run: a request of its own once the retry's pause is over (not while stopped); that pause. */
  #retryLater(): number | undefined {
    const after = this.retryAfter(this.#failedInARow);
    if (after === undefined || this.#stopped) return undefined;
    this.#retryTimer = setTimeout(() => this.request({ scheduled: true }), after);
    // The retry alone does not keep the process alive.
    this.#retryTimer.unref();
    return after;
  }

  /** Ends the pause the loop is waiting out, if it is. */
  #wake: (() => void) | undefined;

  async #loop(): Promise<void> {
    // Yield first: the batch that asked for this has its 2xx on the way.
    await new Promise((r) => setImmediate(r));
    while (this.#requested && !this.#stopped) {
      const wait = this.#nextStart - performance.now();
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
        if (this.#stopped) break;
      }
      this.#requested = false;
      this.#requestsDuringRun = 0;
      this.#inRun = true;
      // This run does what a retry waiting for its time would have asked for.
      clearTimeout(this.#retryTimer);
      const t0 = performance.now();
      try {
        await this.work();
        this.#failedInARow = 0;
      } catch (err) {
        this.stats.failures++;
        this.#failedInARow++;
        this.onError(err, this.#retryLater());
      } finally {
        this.#inRun = false;
      }
      const took = performance.now() - t0;
      this.stats.runs++;
      this.stats.lastMs = took;
      const busy = this.#requestsDuringRun > 0 || this.ingestBusy();
      this.#nextStart = busy ? performance.now() + this.gapAfter(took) : 0;
    }
  }
}
