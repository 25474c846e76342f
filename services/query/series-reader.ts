import type { DuckStore } from '../platform/duck-store.js';
import { AggregateCache } from './aggregate-cache.js';
import type { RollupMaintainer } from './rollups.js';

/**
 * The query layer's read path over one store: the aggregate cache and, while they run, the
 * rollups. The assembly makes one per room and hands it to every reader of aggregates (query
 * routes, band evaluation), so they share one cache and one view of the rollups.
 */
export class SeriesReader {
  readonly duck: DuckStore;
  /** Null when turned off (benchmarks of cold queries). */
  readonly cache: AggregateCache | null;
  /** Set while a maintainer keeps the rollups current (startRollups); series read the points otherwise. */
  rollups: RollupMaintainer | undefined;

  constructor(duck: DuckStore, opts: { cache?: boolean; cacheCells?: number } = {}) {
    this.duck = duck;
    this.cache =
      opts.cache === false
        ? null
        : new AggregateCache(duck, opts.cacheCells === undefined ? {} : { maxCells: opts.cacheCells });
  }
}
