/**
 * npm run bench:reads — a busy joint dashboard (issue #17): 16 clients (BENCH_READS_CLIENTS, in a worker thread) read
 * a warm series over keep-alive connections for BENCH_READS_SECONDS each round, against the room
 * (every read authenticated and written to the audit hash chain) and against a bare Fastify on
 * the same machine serving the very same body. Interleaved rounds (BENCH_READS_ROUNDS, ≥ 3); the
 * ratio room / bare per round, with min, median and max, is the result — absolute rates vary with
 * the machine's load, the ratio much less. Each round also lands a small batch touching the
 * series and times one read right after it, then lands another and times BURST (16) identical
 * reads sent at once (a dashboard's viewers after new data): the burst's time over the single
 * read's says how much of the burst's work is shared. The audit chain is verified at the end.
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
import { ndjson } from '../tests/helpers/points.js';
import { createScratchDatabase, postgresAnswers as answers } from '../tests/helpers/scratch-db.js';
import { median, spread } from './rounds.js';

const CLIENTS = Number(process.env['BENCH_READS_CLIENTS'] ?? 16);
const SECONDS = Number(process.env['BENCH_READS_SECONDS'] ?? 5);
const ROUNDS = Math.max(3, Number(process.env['BENCH_READS_ROUNDS'] ?? 3));
const BURST = Number(process.env['BENCH_READS_BURST'] ?? 16);

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

const PG_URL = process.env['DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres';

/** A room with three months of the demo, listening; its control plane PGlite or a scratch PostgreSQL database. */
async function startRoom(control: 'postgres' | 'pglite') {
  const dir = mkdtempSync(join(tmpdir(), 'parity-bench-reads-'));
  const scratch = control === 'postgres' ? await createScratchDatabase(PG_URL, 'parity_bench_reads') : undefined;
  const room = await openRoom(
    loadConfig({
      PARITY_DATA_DIR: dir,
      PARITY_AGREEMENT: demoAgreementFile(),
      DATABASE_URL: scratch?.url ?? '',
      LOG_LEVEL: 'error',
    }),
  );
  const app = await buildApp(room);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.stderr.write(`seeding three months of the demo partnership (${control})…\n`);
  const to = new Date(Date.UTC(2026, 10, 23));
  await seedDemoPoints(room, { from: new Date(to.getTime() - 91 * 86_400_000), to, deliveryDays: 7 });
  await app.reader.rollups?.loop.idle();
  const token = (await createToken(room.control.db, { partnerId: 'acme', role: 'analyst', name: 'bench' }, new Date()))
    .token;
  const headers = { authorization: `Bearer ${token}` };
  const ingest = (
    await createToken(room.control.db, { partnerId: 'globex', role: 'ingest', name: 'bench' }, new Date())
  ).token;
  let batches = 0;
  /** Lands 2,000 lead_time points on the series' last days: its cached aggregate no longer answers. */
  const land = async () => {
    const b = batches++;
    const body = ndjson(
      Array.from({ length: 2000 }, (_, i) => ({
        kpi: 'lead_time',
        at: new Date(to.getTime() - ((i % 96) + 1) * 3_600_000).toISOString(),
        value: 20 + (i % 40),
        subject: `BURST-${b}-${i}`,
        dims: { region: i % 2 ? 'north' : 'south' },
      })),
    );
    const r = await request(`${url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ingest}`, 'content-type': 'application/x-ndjson' },
      body,
    });
    await r.body.text();
    if (r.statusCode !== 202) throw new Error(`the burst's batch answered ${r.statusCode}`);
  };
  /** ms until `n` identical reads sent at once have all answered. */
  const readAtOnce = async (n: number) => {
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: n }, async () => {
        const r = await request(`${url}${PATH}`, { headers });
        await r.body.arrayBuffer();
        if (r.statusCode !== 200) throw new Error(`the series answered ${r.statusCode}`);
      }),
    );
    return performance.now() - t0;
  };
  const warm = await request(`${url}${PATH}`, { headers });
  const body = Buffer.from(await warm.body.arrayBuffer());
  if (warm.statusCode !== 200) throw new Error(`the series answered ${warm.statusCode}`);
  return {
    control,
    url: `${url}${PATH}`,
    headers,
    body,
    /**
     * One read right after a batch, then BURST reads at once right after another: their ms. Each
     * starts from a settled room (the batch's rollup catch-up and band evaluation done), so the
     * two meet the same work: the batch's periods read from the points.
     */
    async burst() {
      const settle = async () => {
        await app.reader.rollups?.loop.idle();
        await app.alerts?.engine.idle();
      };
      await settle();
      await land();
      const single = await readAtOnce(1);
      await settle();
      await land();
      const burst = await readAtOnce(BURST);
      // Settled again before the next load is measured.
      await settle();
      return { single, burst };
    },
    async close() {
      const chain = await verifyAuditChain(room.control.db);
      await app.close();
      await room.close();
      await scratch?.drop();
      rmSync(dir, { recursive: true, force: true });
      return chain;
    },
  };
}

const PATH = '/v1/kpis/lead_time/series?grain=week&by=partner';

async function main() {
  const only = process.env['BENCH_READS_CONTROL'];
  const postgres = await answers(PG_URL);
  const controls = (postgres ? (['postgres', 'pglite'] as const) : (['pglite'] as const)).filter(
    (c) => !only || c === only,
  );
  if (!controls.length)
    throw new Error(`BENCH_READS_CONTROL=${only}: expected postgres or pglite (a PostgreSQL that answers)`);
  if (!postgres) process.stderr.write(`no PostgreSQL at ${PG_URL}: PGlite only\n`);
  const rooms = [];
  for (const c of controls) rooms.push(await startRoom(c));
  const body = rooms[0]!.body;
  const bare = Fastify();
  bare.get('/series', async (_req, reply) => reply.type('application/json').send(body));
  const bareUrl = await bare.listen({ port: 0, host: '127.0.0.1' });

  const ratios = new Map<string, number[]>(controls.map((c) => [c, []]));
  const rates = new Map<string, number[]>(controls.map((c) => [c, []]));
  const bareRates: number[] = [];
  const bursts = new Map<string, { single: number; burst: number }[]>(controls.map((c) => [c, []]));
  for (let i = 0; i < ROUNDS; i++) {
    const b = await load(`${bareUrl}/series`, {});
    bareRates.push(b);
    const line = [`round ${i + 1}: bare Fastify ${b.toFixed(0)}/s`];
    for (const room of rooms) {
      const r = await load(room.url, room.headers);
      ratios.get(room.control)!.push(r / b);
      rates.get(room.control)!.push(r);
      line.push(`room (${room.control}) ${r.toFixed(0)}/s`);
      const burst = await room.burst();
      bursts.get(room.control)!.push(burst);
      line.push(`burst ${burst.burst.toFixed(0)} ms against ${burst.single.toFixed(0)} ms for one`);
    }
    process.stderr.write(`${line.join(', ')}\n`);
  }
  const chains = [];
  for (const room of rooms) chains.push({ control: room.control, ...(await room.close()) });
  await bare.close();

  const n0 = (x: number) => x.toFixed(0);
  const r2 = (x: number) => x.toFixed(2);
  console.log(
    `\n### Reads — npm run bench:reads (${CLIENTS} clients, ${SECONDS} s a round, ${ROUNDS} interleaved rounds)\n`,
  );
  console.log('| measure | min | median | max |');
  console.log('|---|---|---|---|');
  console.log(`| bare Fastify, same body (req/s) | ${spread(bareRates, n0)} |`);
  for (const c of controls) {
    const name = c === 'postgres' ? 'PostgreSQL' : 'embedded PGlite';
    console.log(`| room, control plane ${name} (req/s) | ${spread(rates.get(c)!, n0)} |`);
    console.log(`| room / bare, control plane ${name} (target ≥ 0.5) | ${spread(ratios.get(c)!, r2)} |`);
  }
  console.log(
    `\nRight after a batch touching the series: one read, and ${BURST} identical reads sent at once (another batch before them), per round:\n`,
  );
  console.log('| measure | min | median | max |');
  console.log('|---|---|---|---|');
  for (const c of controls) {
    const name = c === 'postgres' ? 'PostgreSQL' : 'embedded PGlite';
    const bs = bursts.get(c)!;
    console.log(
      `| one read, ms (${name}) | ${spread(
        bs.map((b) => b.single),
        n0,
      )} |`,
    );
    console.log(
      `| ${BURST} reads at once, ms until the last answered (${name}) | ${spread(
        bs.map((b) => b.burst),
        n0,
      )} |`,
    );
    console.log(
      `| burst / one read (${name}; about 1 when the burst costs one computation) | ${spread(
        bs.map((b) => b.burst / b.single),
        r2,
      )} |`,
    );
  }
  for (const ch of chains)
    console.log(`\naudit chain (${ch.control}) after the run: ${ch.ok ? `intact, ${ch.entries} entries` : 'BROKEN'}`);
  console.log(
    `summary: warm series under ${CLIENTS} clients at ${controls
      .map((c) => `${r2(median(ratios.get(c)!))}× (${c})`)
      .join(
        ', ',
      )} a bare Fastify serving the same body (median of ${ROUNDS}), every read in the audit chain; ${BURST} identical reads right after a batch take ${controls
      .map((c) => `${r2(median(bursts.get(c)!.map((b) => b.burst / b.single)))}× (${c})`)
      .join(', ')} one read's time`,
  );
  if (chains.some((c) => !c.ok)) process.exitCode = 1;
}

await main();
