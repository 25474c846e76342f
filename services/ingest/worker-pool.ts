import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import type { WorkerHeap } from '../platform/config.js';
import { Problem } from '../platform/errors.js';
import type { FromParse, FromSpool, ToParse, ToSpool } from './worker-protocol.js';

type ParseDone = Extract<FromParse, { type: 'done' }>;
type SpoolDone = Extract<FromSpool, { type: 'done' }>;
type ParseStart = Omit<Extract<ToParse, { type: 'start' }>, 'type' | 'id' | 'rows'>;
type SpoolStart = Omit<ToSpool, 'type' | 'id' | 'rows'>;

/**
 * Bytes sent to a parse worker and not yet taken by its parser: the bound on buffered body. At
 * most 8 MiB, and an eighth of the worker's old space: a chunk is held as bytes and, while parsed,
 * as a string twice its size, so a 30 MB worker (a 512MB budget) buffering 8 MiB ran out of memory
 * on the demo's own seed batches now and then.
 */
const inFlightBound = (oldMb: number) => Math.min(8, oldMb / 8) * 1024 * 1024;

// Run from the sources (tests, tsx) the workers are TypeScript: they register tsx first.
const fromSources = import.meta.url.endsWith('.ts');
const tsxApi = fromSources
  ? pathToFileURL(
      createRequire(import.meta.url)
        .resolve('tsx/esm/api')
        .replace(/\.cjs$/, '.mjs'),
    ).href
  : '';

/**
 * A parse worker that holds a body (bytes sent and not taken, or the body's end and no answer) and
 * says nothing for this long — no chunk taken, no word of rows parsed (it sends one at most once a
 * second while rows come), no rows spooled — is stuck: a reader looping on a
 * crafted body (apache-arrow's file reader did, on a footer block pointing at the wrong kind of
 * message). Its batch is refused with a 400 and both its workers ended, so the writer and the core
 * it held come back. A body that parses is never quiet for a minute; a worker still starting (it
 * has said nothing on the batch yet) is not counted.
 */
export const PARSE_STALL_MS = 60_000;

/** Idle worker threads of one kind, reused batch after batch. */
class Pool {
  readonly #idle: Worker[] = [];
  readonly #all = new Set<Worker>();
  readonly #url: URL;

  constructor(
    file: string | URL,
    private readonly workerData: unknown,
    private readonly resourceLimits: { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number },
  ) {
    this.#url = file instanceof URL ? file : new URL(fromSources ? `./${file}.ts` : `./${file}.js`, import.meta.url);
  }

  /** Workers alive (idle, on a batch, or ending). */
  get size(): number {
    return this.#all.size;
  }

  /** Workers started since the pool began. */
  get started(): number {
    return this.#started;
  }
  #started = 0;

  acquire(): Worker {
    const idle = this.#idle.pop();
    if (idle) return idle;
    const w = fromSources
      ? new Worker(
          `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(this.#url.href)}); });`,
          { eval: true, workerData: this.workerData, resourceLimits: this.resourceLimits },
        )
      : new Worker(this.#url, { workerData: this.workerData, resourceLimits: this.resourceLimits });
    w.unref();
    this.#all.add(w);
    this.#started++;
    // A worker that fails between batches (out of its small heap while idle, say) leaves the pool;
    // without a listener of its own its 'error' event would end the process. A batch in flight
    // listens too, and answers its request (run's onError).
    const drop = () => {
      this.#all.delete(w);
      const i = this.#idle.indexOf(w);
      if (i >= 0) this.#idle.splice(i, 1);
    };
    w.on('error', drop);
    w.once('exit', drop);
    return w;
  }

  /**
   * A worker that finished its batch goes back; one left mid-batch is replaced. One `retired`
   * ends instead (its heap goes back to the process) without holding up the batch's answer: it
   * leaves the pool once it has exited ('exit' above), so close() still waits for it.
   */
  async release(w: Worker, clean: boolean, retired = false): Promise<void> {
    if (!clean || !this.#all.has(w)) await w.terminate();
    else if (retired) void w.terminate();
    else this.#idle.push(w);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#all].map((w) => w.terminate()));
    this.#idle.length = 0;
  }
}

/** One batch streaming through a parse worker and a spool worker. */
export interface BatchRun {
  /** Hands a body chunk to the parse worker; waits while too much is in flight. */
  send(chunk: Buffer): Promise<void>;
  end(): void;
  /** Both workers' summaries, or the parse worker's Problem (400/422) for a body it cannot read. */
  readonly result: Promise<{ parse: ParseDone; spool: SpoolDone }>;
  /** Returns the workers to the pool (or ends them when the batch did not finish). */
  release(): Promise<void>;
}

/** The ingest threads: parse workers and spool workers, paired per batch. */
export class IngestWorkerPool {
  readonly #parse: Pool;
  readonly #spool: Pool;
  #nextId = 1;
  readonly #maxInFlight: number;
  readonly #retireAfterRows: number | null;
  readonly #stallMs: number;

  /**
   * Ingest holds at most a few segments in memory; a small heap keeps the process small (48 MB of
   * old space by default, less under PARITY_MEMORY_LIMIT: config.ts memoryPlan).
   */
  constructor(
    secret: Buffer,
    rotations: readonly Buffer[] = [],
    heap: WorkerHeap = { oldMb: 48, youngMb: 8, retireAfterRows: null },
    /** `stallMs`: PARSE_STALL_MS unless a test says; `parseWorker`: another parse worker's module (a test's). */
    opts: { stallMs?: number; parseWorker?: URL } = {},
  ) {
    const limits = { maxOldGenerationSizeMb: heap.oldMb, maxYoungGenerationSizeMb: heap.youngMb };
    this.#maxInFlight = inFlightBound(heap.oldMb);
    this.#retireAfterRows = heap.retireAfterRows;
    this.#stallMs = opts.stallMs ?? PARSE_STALL_MS;
    this.#parse = new Pool(opts.parseWorker ?? 'parse-worker', {}, limits);
    this.#spool = new Pool(
      'spool-worker',
      { secret: new Uint8Array(secret), rotations: rotations.map((r) => new Uint8Array(r)) },
      limits,
    );
  }

  /** Worker threads alive, parse and spool (idle ones included), and started since the pool began. */
  get threads(): { alive: number; started: number } {
    return { alive: this.#parse.size + this.#spool.size, started: this.#parse.started + this.#spool.started };
  }

  run(parseStart: ParseStart, spoolStart: SpoolStart, onSegment: (path: string, rows: number) => void): BatchRun {
    const id = this.#nextId++;
    const maxInFlight = this.#maxInFlight;
    const parser = this.#parse.acquire();
    const spooler = this.#spool.acquire();
    const channel = new MessageChannel();
    let inFlight = 0;
    let waiter: (() => void) | undefined;
    let failure: unknown;
    let parseDone: ParseDone | undefined;
    let spoolDone: SpoolDone | undefined;
    let parseClean = false;
    let resolve!: (r: { parse: ParseDone; spool: SpoolDone }) => void;
    let reject!: (e: unknown) => void;
    const result = new Promise<{ parse: ParseDone; spool: SpoolDone }>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    result.catch(() => undefined);
    // The watchdog: when the parse worker last said something, or was last given work after a quiet
    // spell; and whether it has said anything on this batch yet. Until it has, it is starting (a new
    // thread loading its modules, or the Arrow reader loaded for a first Arrow body), not parsing:
    // a parser that loops has taken a chunk first, and said so.
    let heard = Date.now();
    let spoke = false;
    let ended = false;
    const stallMs = this.#stallMs;
    const watchdog = setInterval(
      () => {
        if (failure || parseDone || !spoke || !(inFlight > 0 || ended) || Date.now() - heard < stallMs) return;
        // Not clean: release() ends both workers (the parser may be spinning).
        parseClean = false;
        fail(
          new Problem(
            400,
            'Bad Request',
            `the body could not be read: its parser made no progress for ${stallMs >= 1_000 ? `${Math.round(stallMs / 1_000)} s` : `${stallMs} ms`}`,
            { field: 'body' },
          ),
        );
      },
      Math.max(10, Math.min(1_000, stallMs / 4)),
    );
    watchdog.unref();
    const fail = (e: unknown) => {
      if (failure) return;
      failure = e;
      clearInterval(watchdog);
      reject(e);
      waiter?.();
    };
    const settle = () => {
      if (parseDone && spoolDone && !failure) {
        clearInterval(watchdog);
        resolve({ parse: parseDone, spool: spoolDone });
      }
    };
    const onParse = (m: FromParse) => {
      if (m.id !== id) return;
      heard = Date.now();
      spoke = true;
      if (m.type === 'ack') {
        inFlight -= m.bytes;
        if (inFlight <= maxInFlight / 2) waiter?.();
      } else if (m.type === 'progress') {
        // Heard, and nothing more: the parser is getting on.
      } else if (m.type === 'done') {
        parseClean = true;
        parseDone = m;
        settle();
      } else if (m.type === 'problem') {
        parseClean = true;
        fail(new Problem(m.status, m.title, m.detail, m.extra));
      } else fail(new Error(`ingest parse worker: ${m.message}`));
    };
    const onSpool = (m: FromSpool) => {
      if (m.id !== id) return;
      // Rows spooled: the parser got them there.
      heard = Date.now();
      if (m.type === 'segment') onSegment(m.path, m.rows);
      else if (m.type === 'done') {
        spoolDone = m;
        settle();
      } else fail(new Error(`ingest spool worker: ${m.message}`));
    };
    // A worker that dies on a body (out of its memory on a hostile Arrow stream, say) answers this
    // request at once with a 400; the pool replaces the worker.
    const died = (why: string) =>
      new Problem(400, 'Bad Request', `the body could not be read within the memory a batch may use (${why})`, {
        field: 'body',
      });
    const onError = (e: unknown) =>
      fail((e as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY' ? died('out of memory') : e);
    const onExit = (code: number) => fail(died(`the worker exited with code ${code}`));
    const listen = (on: boolean) => {
      for (const [w, fn] of [
        [parser, onParse],
        [spooler, onSpool],
      ] as const) {
        (on ? w.on : w.off).call(w, 'message', fn);
        (on ? w.on : w.off).call(w, 'error', onError);
        (on ? w.on : w.off).call(w, 'exit', onExit);
      }
    };
    listen(true);
    const toParse = (m: ToParse, transfer?: (ArrayBuffer | MessageChannel['port1'])[]) =>
      parser.postMessage(m, transfer);
    spooler.postMessage({ type: 'start', id, ...spoolStart, rows: channel.port2 } satisfies ToSpool, [channel.port2]);
    toParse({ type: 'start', id, ...parseStart, rows: channel.port1 }, [channel.port1]);
    return {
      result,
      async send(chunk: Buffer) {
        if (failure) throw failure;
        // Copy out of Node's pooled buffers so the transfer hands over only this chunk.
        const buf = chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer;
        // Work after a quiet client is new work: the parser's silence counts from here.
        if (inFlight === 0) heard = Date.now();
        inFlight += buf.byteLength;
        toParse({ type: 'chunk', id, buf }, [buf]);
        while (inFlight > maxInFlight && !failure) await new Promise<void>((r) => (waiter = r));
        waiter = undefined;
        if (failure) throw failure;
      },
      end() {
        if (!ended && inFlight === 0) heard = Date.now();
        ended = true;
        toParse({ type: 'end', id });
      },
      release: async () => {
        clearInterval(watchdog);
        listen(false);
        // A pair that carried a batch this large has grown its heaps: they go back to the work the
        // batch leaves behind (its rollups, its band evaluation), and the next batch starts a pair.
        // A body refused partway (the parse worker's Problem) keeps its pair: nothing lands after it.
        const bound = this.#retireAfterRows;
        const retired = bound !== null && parseDone !== undefined && parseDone.rows >= bound;
        await Promise.all([
          this.#parse.release(parser, parseClean, retired),
          this.#spool.release(spooler, spoolDone !== undefined, retired),
        ]);
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.#parse.close(), this.#spool.close()]);
  }
}
