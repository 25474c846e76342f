/**
 * The spool worker: pseudonymises the rows its parse worker checked and writes the landed
 * form (`kpi, epoch ms, value, pseudonym, dims JSON`, tab-separated) to spool segments for
 * the lander to insert into DuckDB. The raw subject is dropped here, before any write.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { createPseudonymiser } from './pseudonymiser.js';
import type { FromSpool, RowsAck, RowsMessage, ToSpool } from './worker-protocol.js';

const port = parentPort!;
const pseudonymise = createPseudonymiser(
  Buffer.from(workerData.secret as Uint8Array),
  ((workerData.rotations ?? []) as Uint8Array[]).map((r) => Buffer.from(r)),
);
const post = (m: FromSpool) => port.postMessage(m);
const ack: RowsAck = { type: 'ack' };

port.on('message', (start: ToSpool) => {
  const dict: string[] = [];
  const checksum = createHash('sha256');
  let segment = 0;
  let written = 0;
  let lines = '';
  let segmentRows = 0;
  mkdirSync(start.spoolDir, { recursive: true });
  // The canonical line is both the spool row and the checksum input.
  const flush = () => {
    if (segmentRows === 0) return;
    const path = join(start.spoolDir, `${String(segment++).padStart(6, '0')}.tsv`);
    writeFileSync(path, lines);
    checksum.update(lines);
    post({ type: 'segment', id: start.id, path, rows: segmentRows });
    written += segmentRows;
    lines = '';
    segmentRows = 0;
  };
  start.rows.on('message', (m: RowsMessage) => {
    try {
      if (m.type === 'end') {
        flush();
        start.rows.close();
        post({ type: 'done', id: start.id, written, checksum: checksum.digest('hex') });
        return;
      }
      for (const e of m.newEntries) dict.push(e);
      for (let i = 0; i < m.n; i++) {
        const d = m.dims[i]!;
        lines += `${dict[m.kpi[i]!]}\t${m.ms[i]}\t${m.value[i]}\t${pseudonymise(start.partnerId, m.subject[i]!)}\t${d < 0 ? '' : dict[d]}\n`;
        if (++segmentRows >= start.segmentRows) flush();
      }
      start.rows.postMessage(ack);
    } catch (err) {
      start.rows.close();
      post({ type: 'failed', id: start.id, message: (err as Error).message });
    }
  });
});
