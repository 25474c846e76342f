import type { DuckStore } from '../platform/duck-store.js';
import type { SeriesQuery } from './aggregate-compiler.js';
import type { RawCell } from './disclosure.js';

/**
 * Aggregates by (query, effective snapshot): the effective snapshot is the last one that
 * touched the KPI, so a new batch invalidates the KPIs it touched and no others, and "as of
 * snapshot N" stays cached for good. Entries are immutable results; the oldest go first.
 */
export class AggregateCache {
  readonly #entries = new Map<string, readonly RawCell[]>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly duck: DuckStore,
    private readonly maxEntries = 2000,
  ) {}

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
    ]);
  }

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
    this.misses++;
    const cells = await compute();
    this.#entries.set(k, cells);
    if (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    return cells;
  }
}
