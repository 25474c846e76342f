import type { DuckStore } from '../platform/duck-store.js';
import type { SeriesQuery } from './aggregate-compiler.js';
import type { RawCell } from './disclosure.js';

/**
 * Aggregates by (query, effective snapshot): the effective snapshot is the last one that
 * touched the KPI, so a new batch invalidates the KPIs it touched and no others, and "as of
 * snapshot N" stays cached for good. Entries are immutable results; the oldest go first.
 *
 * Requests for an aggregate being computed wait for that computation instead of starting their
 * own (single flight): right after a batch, every viewer of a dashboard asks for the same series
 * at the same snapshot, and the first read of its moved periods is the costly one (points, not
 * rollups). A key names one snapshot's exact result, so sharing it changes no number.
 */
export class AggregateCache {
  readonly #entries = new Map<string, readonly RawCell[]>();
  readonly #computing = new Map<string, Promise<readonly RawCell[]>>();
  /** Requests answered from the cache; computations run; requests that waited for another's computation. */
  hits = 0;
  misses = 0;
  shared = 0;
  /** The cells the entries hold: what the cache costs the heap (config.ts, CACHE_CELL_BYTES each). */
  cells = 0;
  readonly #maxEntries: number;
  readonly #maxCells: number;

  /**
   * Bounded by entries and by cells: every distinct range of a long daily series is an entry of
   * its own (a reader asking for a thousand `from` dates once grew the heap by 1.8 GB in 39 s,
   * a red team's finding, when only the entries were counted). An aggregate of more than a
   * quarter of `maxCells` is computed for its requests and not kept.
   */
  constructor(
    private readonly duck: DuckStore,
    opts: { maxEntries?: number; maxCells?: number } = {},
  ) {
    this.#maxEntries = opts.maxEntries ?? 2000;
    this.#maxCells = opts.maxCells ?? 250_000;
  }

  key(q: SeriesQuery, agreementVersion: number): string {
    const by = q.by.kind === 'dimension' ? `dim:${q.by.key}` : q.by.kind;
    return JSON.stringify([
      agreementVersion,
      q.kpi.id,
      q.kpi.measure,
      q.grain,
      by,
      q.from,
      q.to,
      q.timezone,
      this.duck.touched.effective(q.kpi.id, q.snapshot),
      // The retention cut withholds the periods before it in every KPI (queryAggregate), also in
      // those a retention run deleted nothing from and so did not touch.
      this.duck.retainedFrom,
    ]);
  }

  /**
   * The cached cells, or those of the computation under way for the same key, or `compute()`'s.
   * A failed computation is not kept: the requests that shared it fail with it, the next one
   * computes again.
   */
  async get(q: SeriesQuery, agreementVersion: number, compute: () => Promise<RawCell[]>): Promise<readonly RawCell[]> {
    const k = this.key(q, agreementVersion);
    const hit = this.#entries.get(k);
    if (hit) {
      this.hits++;
      // Refresh recency: Map keeps insertion order.
      this.#entries.delete(k);
      this.#entries.set(k, hit);
      return hit;
    }
    const running = this.#computing.get(k);
    if (running) {
      this.shared++;
      return running;
    }
    this.misses++;
    const computed = compute()
      .then((cells) => {
        if (cells.length > this.#maxCells / 4) return cells;
        this.#entries.set(k, cells);
        this.cells += cells.length;
        // The least recently used go first.
        while (this.#entries.size > this.#maxEntries || this.cells > this.#maxCells) {
          const [oldest, gone] = this.#entries.entries().next().value!;
          this.#entries.delete(oldest);
          this.cells -= gone.length;
        }
        return cells;
      })
      .finally(() => this.#computing.delete(k));
    this.#computing.set(k, computed);
    return computed;
  }
}
