import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Problem } from '../platform/errors.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

type Done = Extract<FromWorker, { type: 'done' }>;
type Start = Omit<Extract<ToWorker, { type: 'start' }>, 'type' | 'id'>;

/** Bytes sent to a worker and not yet taken by its parser: the bound on buffered body. */
const MAX_IN_FLIGHT = 8 * 1024 * 1024;

// Run from the sources (tests, tsx) the worker is TypeScript: it registers tsx first.
const fromSources = import.meta.url.endsWith('.ts');
const workerUrl = new URL(fromSources ? './ingest-worker.ts' : './ingest-worker.js', import.meta.url);
const workerSource = fromSources
  ? `import(${JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}); });`
  : undefined;

/** One batch streaming through a worker. */
export interface BatchRun {
  /** Hands a body chunk to the worker; waits while too much is in flight. */
  send(chunk: Buffer): Promise<void>;
  end(): void;
  /** The worker's summary, or its Problem (400/422) for a body it cannot read. */
  readonly result: Promise<Done>;
}

/** Long-lived ingest worker threads, one per concurrent batch. */
export class IngestWorkerPool {
  readonly #idle: Worker[] = [];
  readonly #all = new Set<Worker>();
  #nextId = 1;

  constructor(private readonly secret: Buffer) {}

  #spawn(): Worker {
    const w = new Worker(workerSource ?? workerUrl, { workerData: { secret: new Uint8Array(this.secret) }, eval: workerSource !== undefined, resourceLimits: { maxOldGenerationSizeMb: 96, maxYoungGenerationSizeMb: 16 } });
    w.unref();
    this.#all.add(w);
    w.once('exit', () => this.#all.delete(w));
    return w;
  }

  /** Runs one batch; `onSegment` receives each spooled segment as the worker writes it. */
  run(start: Start, onSegment: (path: string, rows: number) => void): BatchRun & { release(): void } {
    const worker = this.#idle.pop() ?? this.#spawn();
    const id = this.#nextId++;
    let inFlight = 0;
    let waiter: (() => void) | undefined;
    let settled = false;
    // The worker finished this batch itself (done or a problem) and can take the next one.
    let clean = false;
    let failure: unknown;
    let resolve!: (d: Done) => void;
    let reject!: (e: unknown) => void;
    const result = new Promise<Done>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    result.catch(() => undefined);
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      failure = e;
      reject(e);
      waiter?.();
    };
    const onMessage = (m: FromWorker) => {
      if (m.id !== id) return;
      switch (m.type) {
        case 'ack':
          inFlight -= m.bytes;
          if (inFlight <= MAX_IN_FLIGHT / 2) waiter?.();
          break;
        case 'segment':
          onSegment(m.path, m.rows);
          break;
        case 'done':
          settled = true;
          clean = true;
          resolve(m);
          break;
        case 'problem':
          clean = true;
          fail(new Problem(m.status, m.title, m.detail, m.extra));
          break;
        case 'failed':
          fail(new Error(`ingest worker: ${m.message}`));
          break;
      }
    };
    const onError = (e: unknown) => fail(e);
    const onExit = (code: number) => fail(new Error(`ingest worker exited (${code})`));
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
    const msg = (m: ToWorker, transfer?: ArrayBuffer[]) => worker.postMessage(m, transfer);
    msg({ type: 'start', id, ...start });
    return {
      result,
      async send(chunk: Buffer) {
        if (failure) throw failure;
        // Copy out of Node's pooled buffers so the transfer hands over only this chunk.
        const buf = chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer;
        inFlight += buf.byteLength;
        msg({ type: 'chunk', id, buf }, [buf]);
        while (inFlight > MAX_IN_FLIGHT && !failure) await new Promise<void>((r) => (waiter = r));
        waiter = undefined;
        if (failure) throw failure;
      },
      end() {
        msg({ type: 'end', id });
      },
      release: () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        // A worker left mid-batch (the client vanished, the body was too large) is replaced.
        if (clean && this.#all.has(worker)) this.#idle.push(worker);
        else void worker.terminate();
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#all].map((w) => w.terminate()));
    this.#idle.length = 0;
  }
}
