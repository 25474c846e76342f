/**
 * A parse worker that takes a body's chunks and then never answers its end: what a reader looping
 * on a crafted body looks like to the pool (tests/integration/ingest-workers.test.ts, the stall
 * watchdog). It spins, as apache-arrow's file reader did, so only ending the thread stops it.
 */
import { parentPort } from 'node:worker_threads';

parentPort!.on('message', (m: { type: string; id: number; buf?: ArrayBuffer }) => {
  if (m.type === 'chunk') parentPort!.postMessage({ type: 'ack', id: m.id, bytes: m.buf!.byteLength });
  if (m.type === 'end') for (;;);
});
