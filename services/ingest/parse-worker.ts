/**
 * The parse worker: reads one batch at a time, checks every point against the agreement and
 * hands the valid ones to its spool worker as compact columns. Raw subjects live only in
 * this thread's and the spool worker's memory; they are never written or posted elsewhere.
 */
import { createHash } from 'node:crypto';
import { parentPort, type MessagePort } from 'node:worker_threads';
import type { Agreement } from '../platform/agreement-schema.js';
import { Problem } from '../platform/errors.js';
import { parseBody, type IngestKind } from './body-parsers.js';
import { compileValidator, RowErrors } from './point-validator.js';
import type { FromParse, RowsAck, RowsMessage, ToParse } from './worker-protocol.js';

const port = parentPort!;
const ROWS_PER_MESSAGE = 4096;
/** Rows messages the spool worker has not taken yet before this thread waits. */
const MAX_UNACKED = 8;

interface Active {
  id: number;
  queue: Buffer[];
  ended: boolean;
  wake: (() => void) | undefined;
}
let active: Active | undefined;

const post = (m: FromParse) => port.postMessage(m);

async function* input(a: Active): AsyncGenerator<Buffer> {
  for (;;) {
    const next = a.queue.shift();
    if (next) {
      post({ type: 'ack', id: a.id, bytes: next.length });
      yield next;
      continue;
    }
    if (a.ended) return;
    await new Promise<void>((r) => (a.wake = r));
    a.wake = undefined;
  }
}

/** Column buffers of checked rows, sent to the spool worker when full. */
class RowSender {
  #n = 0;
  #kpi = new Int32Array(ROWS_PER_MESSAGE);
  #ms = new Float64Array(ROWS_PER_MESSAGE);
  #value = new Float64Array(ROWS_PER_MESSAGE);
  #dims = new Int32Array(ROWS_PER_MESSAGE);
  #subject: string[] = [];
  readonly #dict = new Map<string, number>();
  #newEntries: string[] = [];
  #unacked = 0;
  #wake: (() => void) | undefined;

  constructor(private readonly out: MessagePort) {
    out.on('message', (_m: RowsAck) => {
      this.#unacked--;
      this.#wake?.();
    });
  }

  #index(s: string): number {
    let i = this.#dict.get(s);
    if (i === undefined) {
      i = this.#dict.size;
      this.#dict.set(s, i);
      this.#newEntries.push(s);
    }
    return i;
  }

  /** Adds a row; true when the buffers are full and the caller must flush (awaited once per message, not per row). */
  push(kpi: string, ms: number, value: number, subject: string, dims: string | null): boolean {
    const i = this.#n++;
    this.#kpi[i] = this.#index(kpi);
    this.#ms[i] = ms;
    this.#value[i] = value;
    this.#dims[i] = dims === null ? -1 : this.#index(dims);
    this.#subject.push(subject);
    return this.#n === ROWS_PER_MESSAGE;
  }

  async flush(): Promise<void> {
    if (this.#n === 0) return;
    const m: RowsMessage = {
      type: 'rows',
      n: this.#n,
      kpi: this.#kpi,
      ms: this.#ms,
      value: this.#value,
      dims: this.#dims,
      subject: this.#subject,
      newEntries: this.#newEntries,
    };
    this.out.postMessage(m, [this.#kpi.buffer, this.#ms.buffer, this.#value.buffer, this.#dims.buffer]);
    this.#unacked++;
    this.#n = 0;
    this.#kpi = new Int32Array(ROWS_PER_MESSAGE);
    this.#ms = new Float64Array(ROWS_PER_MESSAGE);
    this.#value = new Float64Array(ROWS_PER_MESSAGE);
    this.#dims = new Int32Array(ROWS_PER_MESSAGE);
    this.#subject = [];
    this.#newEntries = [];
    while (this.#unacked > MAX_UNACKED) await new Promise<void>((r) => (this.#wake = r));
    this.#wake = undefined;
  }

  end(): void {
    const m: RowsMessage = { type: 'end' };
    this.out.postMessage(m);
    this.out.close();
  }
}

async function run(a: Active, start: Extract<ToParse, { type: 'start' }>): Promise<void> {
  const agreement = start.agreement as Agreement;
  const validate = compileValidator(agreement, { now: () => start.nowMs, clockSkewMs: start.clockSkewMs });
  const dims = new Set(agreement.kpis.flatMap((k) => Object.keys(k.dimensions)));
  const errors = new RowErrors();
  const bodySha = createHash('sha256');
  const sender = new RowSender(start.rows);
  let rows = 0;
  let accepted = 0;
  const kpis = new Set<string>();
  // Once a point is bad and the batch is all-or-nothing, keep counting but stop sending.
  let sending = true;
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of input(a)) {
      bodySha.update(chunk);
      yield chunk;
    }
  }
  // Word to the pool at most once a second while rows come: a file's reader takes every chunk
  // before it yields a row, and rows refused or held back reach no spool, so without it a long
  // parse would look like a stuck one to the stall watchdog (worker-pool.ts PARSE_STALL_MS).
  let said = Date.now();
  try {
    for await (const parsed of parseBody(start.kind as IngestKind, hashed(), dims)) {
      if (Date.now() - said >= 1_000) {
        said = Date.now();
        post({ type: 'progress', id: a.id, rows });
      }
      for (const p of parsed) {
        rows++;
        if (p.error) {
          errors.add(p.row, p.error.field, p.error.message);
          errors.rejectedRows++;
          sending &&= start.partial;
          continue;
        }
        const point = validate(p.candidate!, p.row, errors, p.extra);
        if (!point) {
          sending &&= start.partial;
          continue;
        }
        accepted++;
        kpis.add(point.kpi);
        if (sending && sender.push(point.kpi, point.atMs, point.value, point.subject, point.dims)) await sender.flush();
      }
    }
    if (sending) await sender.flush();
    sender.end();
    post({
      type: 'done',
      id: a.id,
      rows,
      accepted,
      rejected: errors.rejectedRows,
      errors: errors.kept,
      errorsTruncated: errors.truncated,
      bodySha: bodySha.digest('hex'),
      kpis: [...kpis].sort(),
    });
  } catch (err) {
    start.rows.close();
    if (err instanceof Problem)
      post({
        type: 'problem',
        id: a.id,
        status: err.status,
        title: err.title,
        detail: err.detail ?? err.title,
        extra: err.extra,
      });
    else post({ type: 'failed', id: a.id, message: (err as Error).message });
  }
}

port.on('message', (m: ToParse) => {
  if (m.type === 'start') {
    const a: Active = { id: m.id, queue: [], ended: false, wake: undefined };
    active = a;
    void run(a, m).finally(() => {
      if (active === a) active = undefined;
    });
    return;
  }
  const a = active;
  if (!a || a.id !== m.id) return; // a chunk of a batch that already ended
  if (m.type === 'chunk') a.queue.push(Buffer.from(m.buf));
  else a.ended = true;
  a.wake?.();
});
