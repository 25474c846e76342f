import type { DuckStore } from '../platform/duck-store.js';
import { AggregateCache } from './aggregate-cache.js';
import type { RollupMaintainer } from './rollups.js';
import type { Statement } from '../platform/duck-store.js';
import { ReadGate, readCaller, SYSTEM_READ, type ReadCaller } from './read-gate.js';

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

  /** The reads that go to the points, shared by every caller (read-gate.ts). */
  readonly gate: ReadGate;
  /** Whose reads these are: `system` for the room's own; a request's view its caller ({@link forRequest}). */
  readonly caller: ReadCaller = SYSTEM_READ;

  constructor(
    duck: DuckStore,
    opts: { cache?: boolean; cacheCells?: number; pointReads?: number; pointReadsWaiting?: number } = {},
  ) {
    this.duck = duck;
    this.cache =
      opts.cache === false
        ? null
        : new AggregateCache(duck, opts.cacheCells === undefined ? {} : { maxCells: opts.cacheCells });
    this.gate = new ReadGate(opts.pointReads ?? 2, opts.pointReadsWaiting ?? 32);
  }

  /** This reader for one request's reads: the same cache, rollups and gate; its caller's turns (readCaller). */
  forRequest(req: Parameters<typeof readCaller>[0]): SeriesReader {
    const view = Object.create(this) as SeriesReader;
    Object.defineProperty(view, 'caller', { value: readCaller(req), enumerable: true });
    return view;
  }

  /** A statement over the stored points or rollups, run in this reader's caller's turn (read-gate.ts). */
  query(statement: Statement): ReturnType<DuckStore['query']> {
    return this.gate.run(this.caller, () => this.duck.query(statement));
  }
}
