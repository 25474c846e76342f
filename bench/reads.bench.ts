/**
 * npm run bench:reads — a busy joint dashboard (issue #17): 16 clients (BENCH_READS_CLIENTS, in a worker thread) read
 * a warm series over keep-alive connections for BENCH_READS_SECONDS each round, against the room
 * (every read authenticated and written to the audit hash chain) and against a bare Fastify on
 * the same machine serving the very same body. Interleaved rounds (BENCH_READS_ROUNDS, ≥ 3); the
 * ratio room / bare per round, with min, median and max, is the result — absolute rates vary with
 * the machine's load, the ratio much less. The audit chain is verified at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { Worker } from 'node:worker_threads';
import { request } from 'undici';
import { buildApp } from '../assembly/app.js';
import { openRoom } from '../assembly/open-room.js';
import { verifyAuditChain } from '../services/governance/audit-repository.js';
import { createToken } from '../services/governance/token-repository.js';
import { loadConfig } from '../services/platform/config.js';
import { demoAgreementFile } from '../services/platform/paths.js';
import { seedDemoPoints } from '../assembly/demo.js';

const CLIENTS = Number(process.env['BENCH_READS_CLIENTS'] ?? 16);
const SECONDS = Number(process.env['BENCH_READS_SECONDS'] ?? 5);
const ROUNDS = Math.max(3, Number(process.env['BENCH_READS_ROUNDS'] ?? 3));
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

/**
 * The clients, in a worker thread of their own: on two cores the load they make must not share
 * the room's event loop (the room and the bare server would be measured with the clients' cost).
 */
const CLIENT_CODE = `
const { workerData, parentPort } = require('node:worker_threads');
const { Agent, request } = require('undici');
(async () => {
  const { url, headers, clients, seconds } = workerData;
  const agent = new Agent({ connections: clients, pipelining: 1 });
  const end = Date.now() + seconds * 1000;
  let done = 0, failed = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (Date.now() < end) {
      const r = await request(url, { dispatcher: agent, headers });
      await r.body.arrayBuffer();
      if (r.statusCode === 200) done++; else failed++;
    }
  }));
  await agent.close();
  parentPort.postMessage({ rate: done / seconds, failed });
})();
`;

/** Requests per second that CLIENTS keep-alive clients (in a worker) get from `url` in SECONDS. */
async function load(url: string, headers: Record<string, string>): Promise<number> {
  const worker = new Worker(CLIENT_CODE, {
    eval: true,
    workerData: { url, headers, clients: CLIENTS, seconds: SECONDS },
  });
  const { rate, failed } = await new Promise<{ rate: number; failed: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  if (failed) throw new Error(`${failed} requests failed`);
  return rate;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'parity-bench-reads-'));
  const room = await openRoom(
    loadConfig({ PARITY_DATA_DIR: dir, PARITY_AGREEMENT: demoAgreementFile(), DATABASE_URL: '', LOG_LEVEL: 'warn' }),
  );
  const app = await buildApp(room);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.stderr.write('seeding three months of the demo partnership…\n');
  const to = new Date(Date.UTC(2026, 10, 23));
  await seedDemoPoints(room, { from: new Date(to.getTime() - 91 * 86_400_000), to, deliveryDays: 7 });
  await app.reader.rollups?.loop.idle();
  const token = (await createToken(room.control.db, { partnerId: 'acme', role: 'analyst', name: 'bench' }, new Date()))
    .token;
  const path = '/v1/kpis/lead_time/series?grain=week&by=partner';
  const headers = { authorization: `Bearer ${token}` };
  const warm = await request(`${url}${path}`, { headers });
  const body = Buffer.from(await warm.body.arrayBuffer());
  if (warm.statusCode !== 200) throw new Error(`the series answered ${warm.statusCode}`);

  const bare = Fastify();
  bare.get('/series', async (_req, reply) => reply.type('application/json').send(body));
  const bareUrl = await bare.listen({ port: 0, host: '127.0.0.1' });

  const rows: { room: number; bare: number; ratio: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const b = await load(`${bareUrl}/series`, {});
    const r = await load(`${url}${path}`, headers);
    rows.push({ room: r, bare: b, ratio: r / b });
    process.stderr.write(`round ${i + 1}: room ${r.toFixed(0)}/s, bare Fastify ${b.toFixed(0)}/s\n`);
  }
  const chain = await verifyAuditChain(room.control.db);
  await bare.close();
  await app.close();
  await room.close();
  rmSync(dir, { recursive: true, force: true });

  const ratios = sorted(rows.map((r) => r.ratio));
  const rates = sorted(rows.map((r) => r.room));
  const fmt = (x: number) => x.toFixed(2);
  console.log(
    `\n### Reads — npm run bench:reads (${CLIENTS} clients, ${SECONDS} s a round, ${ROUNDS} interleaved rounds)\n`,
  );
  console.log('| measure | min | median | max |');
  console.log('|---|---|---|---|');
  console.log(
    `| room, warm series (req/s) | ${rates[0]!.toFixed(0)} | ${rates[Math.floor(ROUNDS / 2)]!.toFixed(0)} | ${rates.at(-1)!.toFixed(0)} |`,
  );
  console.log(
    `| room / bare Fastify, same body (target ≥ 0.5) | ${fmt(ratios[0]!)} | ${fmt(ratios[Math.floor(ROUNDS / 2)]!)} | ${fmt(ratios.at(-1)!)} |`,
  );
  console.log(`\naudit chain after the run: ${chain.ok ? `intact, ${chain.entries} entries` : 'BROKEN'}`);
  console.log(
    `summary: warm series under ${CLIENTS} clients at ${fmt(ratios[Math.floor(ROUNDS / 2)]!)}× a bare Fastify serving the same body (median of ${ROUNDS}), every read in the audit chain`,
  );
  if (!chain.ok) process.exitCode = 1;
}

await main();
