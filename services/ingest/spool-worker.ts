/**
 * The spool worker: pseudonymises the rows its parse worker checked and writes the landed
 * form (`kpi, epoch ms, value, pseudonym, dims JSON`, tab-separated) to spool segments for
 * the lander to insert into DuckDB. The raw subject is dropped here, before any write.
 */
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
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
  let fd: number | null = null;
  let path = '';
  let segmentRows = 0;
  mkdirSync(start.spoolDir, { recursive: true });
  // The canonical line is both the spool row and the checksum input. Each message's rows go to
  // the open segment file as they come: a 50,000-row segment built as one string took a third
  // of a small worker heap (and, now and then, all of it).
  const write = (chunk: string) => {
    if (!chunk) return;
    if (fd === null) {
      path = join(start.spoolDir, `${String(segment++).padStart(6, '0')}.tsv`);
      fd = openSync(path, 'w');
    }
    writeSync(fd, chunk);
    checksum.update(chunk);
  };
  const flush = () => {
    if (fd === null) return;
    closeSync(fd);
    fd = null;
    post({ type: 'segment', id: start.id, path, rows: segmentRows });
    written += segmentRows;
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
      let lines = '';
      for (let i = 0; i < m.n; i++) {
        const d = m.dims[i]!;
        lines += `${dict[m.kpi[i]!]}\t${m.ms[i]}\t${m.value[i]}\t${pseudonymise(start.partnerId, m.subject[i]!)}\t${d < 0 ? '' : dict[d]}\n`;
        if (++segmentRows >= start.segmentRows) {
          write(lines);
          lines = '';
          flush();
        }
      }
      write(lines);
      start.rows.postMessage(ack);
    } catch (err) {
      if (fd !== null) closeSync(fd);
      fd = null;
      start.rows.close();
      post({ type: 'failed', id: start.id, message: (err as Error).message });
    }
  });
});
