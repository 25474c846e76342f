/**
 * The ingest worker thread: parses, checks and pseudonymises one batch at a time and writes
 * the landed form (pseudonyms only) to spool segments that the main thread inserts into
 * DuckDB. Raw subjects live only in this thread's memory, never in a file or a message.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { Agreement } from '../governance/agreement-schema.js';
import { Problem } from '../platform/errors.js';
import { parseBody, type IngestKind } from './body-parsers.js';
import { compileValidator, RowErrors, type PointValidator } from './point-validator.js';
import { createPseudonymiser } from './pseudonymiser.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

const port = parentPort!;
const pseudonymise = createPseudonymiser(Buffer.from(workerData.secret as Uint8Array));
let validator: { version: number; fn: PointValidator; dims: Set<string>; nowMs: number } | undefined;

interface Active {
  id: number;
  queue: Buffer[];
  ended: boolean;
  wake: (() => void) | undefined;
}
let active: Active | undefined;

const post = (m: FromWorker) => port.postMessage(m);

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

async function run(a: Active, start: Extract<ToWorker, { type: 'start' }>): Promise<void> {
  if (!validator || validator.version !== start.version || validator.nowMs !== start.nowMs) {
    const agreement = start.agreement as Agreement;
    validator = {
      version: start.version,
      nowMs: start.nowMs,
      fn: compileValidator(agreement, { now: () => start.nowMs, clockSkewMs: start.clockSkewMs }),
      dims: new Set(agreement.kpis.flatMap((k) => Object.keys(k.dimensions))),
    };
  }
  const v = validator;
  const errors = new RowErrors();
  const bodySha = createHash('sha256');
  const checksum = createHash('sha256');
  let rows = 0;
  let accepted = 0;
  let segment = 0;
  let lines = '';
  let segmentRows = 0;
  // Once a point is bad and the batch is all-or-nothing, keep counting but stop spooling.
  let spooling = true;
  mkdirSync(start.spoolDir, { recursive: true });
  const flush = () => {
    if (segmentRows === 0) return;
    const path = join(start.spoolDir, `${String(segment++).padStart(6, '0')}.tsv`);
    writeFileSync(path, lines);
    checksum.update(lines);
    post({ type: 'segment', id: a.id, path, rows: segmentRows });
    lines = '';
    segmentRows = 0;
  };
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of input(a)) {
      bodySha.update(chunk);
      yield chunk;
    }
  }
  try {
    for await (const parsed of parseBody(start.kind as IngestKind, hashed(), v.dims)) {
      for (const p of parsed) {
        rows++;
        if (p.error) {
          errors.add(p.row, p.error.field, p.error.message);
          errors.rejectedRows++;
          spooling &&= start.partial;
          continue;
        }
        const point = v.fn(p.candidate!, p.row, errors, p.extra);
        if (!point) {
          spooling &&= start.partial;
          continue;
        }
        accepted++;
        // The canonical line is both the spool row and the checksum input; a batch that
        // stopped spooling is refused, so its checksum is never reported.
        if (spooling) {
          lines += `${point.kpi}\t${point.atMs}\t${point.value}\t${pseudonymise(start.partnerId, point.subject)}\t${point.dims ?? ''}\n`;
          if (++segmentRows >= start.segmentRows) flush();
        }
      }
    }
    if (spooling) flush();
    post({ type: 'done', id: a.id, rows, accepted, rejected: errors.rejectedRows, errors: errors.kept, errorsTruncated: errors.truncated, checksum: checksum.digest('hex'), bodySha: bodySha.digest('hex') });
  } catch (err) {
    if (err instanceof Problem) post({ type: 'problem', id: a.id, status: err.status, title: err.title, detail: err.detail ?? err.title, extra: err.extra });
    else post({ type: 'failed', id: a.id, message: (err as Error).message });
  }
}

port.on('message', (m: ToWorker) => {
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
