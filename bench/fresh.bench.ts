/**
 * npm run bench:fresh — how fresh a busy room's fast reads are (issue #17). Partner systems push
 * 10,000-point NDJSON batches without pause (BENCH_FRESH_CLIENTS uploaders in a worker thread)
 * for BENCH_FRESH_SECONDS, split into ≥ 3 windows (BENCH_FRESH_ROUNDS); in each window:
 *   - rollup lag: from a batch's snapshot becoming visible to the rollups holding it (every
 *     agreed grain and breakdown of the KPIs it touched), p50 / p95 / max;
 *   - visible rate: points that reached the rollups in the window / points that landed in it;
 *   - a series read right after a batch (HTTP, authenticated, audited, before the rollup caught
 *     up) / the same aggregate run directly on DuckDB in-process, taken after alternate batches
 *     (median of each, per window).
 * Each measure prints min / median / max over the windows and a one-line summary.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { request } from 'undici';
import { buildApp } from '../assembly/app.js';
import { seedDemoPoints } from '../assembly/demo.js';
import { openRoom } from '../assembly/open-room.js';
import { createToken } from '../services/governance/token-repository.js';
import { loadConfig } from '../services/platform/config.js';
import { demoAgreementFile } from '../services/platform/paths.js';
import { compileSeries } from '../services/query/aggregate-compiler.js';
import { resolveSeries } from '../services/query/series-service.js';
import { createScratchDatabase, postgresAnswers as answers } from '../tests/helpers/scratch-db.js';
import { spread } from './rounds.js';

const env = process.env;
const SECONDS = Number(env['BENCH_FRESH_SECONDS'] ?? 30);
const ROUNDS = Math.max(3, Number(env['BENCH_FRESH_ROUNDS'] ?? 3));
const CLIENTS = Number(env['BENCH_FRESH_CLIENTS'] ?? 2);
const BATCH = Number(env['BENCH_FRESH_BATCH'] ?? 10_000);
const PG_URL = env['DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres';
const KPI = 'lead_time';
const PATH = `/v1/kpis/${KPI}/series?grain=week&by=partner`;

/** The uploaders: each posts batches of recent points one after another until the time is up. */
const UPLOADER = `
const { workerData, parentPort } = require('node:worker_threads');
const { request } = require('undici');
(async () => {
  const { url, token, clients, batch, seconds } = workerData;
  const end = Date.now() + seconds * 1000;
  let serial = 0, failed = 0;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    while (Date.now() < end) {
      const now = Date.now();
      let body = '';
      for (let i = 0; i < batch; i++) {
        const k = serial++;
        // Deliveries of the last two days: each batch touches the periods a live feed touches.
        const at = new Date(now - (k % 172800) * 1000).toISOString();
        body += JSON.stringify({ kpi: '${KPI}', at, value: 12 + (k % 900) / 10, subject: 'ORD-' + c + '-' + k, dims: { region: k % 5 < 3 ? 'north' : 'south' } }) + '\\n';
      }
      const r = await request(url + '/v1/points', { method: 'POST', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/x-ndjson' }, body });
      const text = await r.body.text();
      if (r.statusCode !== 202) { failed++; parentPort.postMessage({ error: r.statusCode + ' ' + text.slice(0, 300) }); }
    }
  }));
  parentPort.postMessage({ done: true, failed });
})();
`;

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const pct = (xs: number[], p: number) => {
  const s = sorted(xs);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
};

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'parity-bench-fresh-'));
  const scratch = (await answers(PG_URL)) ? await createScratchDatabase(PG_URL, 'parity_bench_fresh') : undefined;
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
  process.stderr.write(
    `seeding a year of the demo partnership (control plane ${scratch ? 'PostgreSQL' : 'PGlite'})…\n`,
  );
  const to = new Date();
  await seedDemoPoints(room, { from: new Date(to.getTime() - 365 * 86_400_000), to, deliveryDays: 7 });
  const rollups = app.reader.rollups;
  if (!rollups) throw new Error('the room keeps no rollups');
  await rollups.loop.idle();
  const reader = (await createToken(room.control.db, { partnerId: 'acme', role: 'analyst', name: 'bench' }, new Date()))
    .token;
  const uploader = (
    await createToken(room.control.db, { partnerId: 'acme', role: 'ingest', name: 'bench' }, new Date())
  ).token;

  // Per snapshot: when it became visible, how many points, when the rollups first held it.
  const landed = new Map<number, { at: number; rolledAt?: number }>();
  let pending: number[] = [];
  const readMs: number[][] = Array.from({ length: ROUNDS }, () => []);
  const directMs: number[][] = Array.from({ length: ROUNDS }, () => []);
  const t0 = performance.now();
  const windowOf = (t: number) => Math.min(ROUNDS - 1, Math.floor(((t - t0) / 1000 / SECONDS) * ROUNDS));
  let measuring = false;
  let alternate = 0;
  const offAdvance = room.duck.snapshots.onAdvance((latest) => {
    const now = performance.now();
    if (!landed.has(latest)) {
      landed.set(latest, { at: now });
      pending.push(latest);
    }
    if (measuring || now - t0 > SECONDS * 1000 || env['BENCH_FRESH_READS'] === '0') return;
    measuring = true;
    const w = windowOf(now);
    const http = alternate++ % 2 === 0;
    void (async () => {
      const s = performance.now();
      if (http) {
        const r = await request(`${url}${PATH}`, { headers: { authorization: `Bearer ${reader}` } });
        await r.body.arrayBuffer();
        if (r.statusCode !== 200) throw new Error(`series answered ${r.statusCode}`);
        readMs[w]!.push(performance.now() - s);
      } else {
        const active = room.agreement();
        const kpi = active.agreement.kpis.find((k) => k.id === KPI)!;
        const q = resolveSeries(
          active.agreement,
          kpi,
          { grain: 'week', by: 'partner' },
          room.duck.snapshots.latest,
          room.clock.now(),
        );
        await room.duck.query(compileSeries(q));
        directMs[w]!.push(performance.now() - s);
      }
    })().finally(() => (measuring = false));
  });
  const poll = setInterval(() => {
    const through = rollups.through;
    const now = performance.now();
    pending = pending.filter((s) => {
      if (through < s) return true;
      landed.get(s)!.rolledAt = now;
      return false;
    });
  }, 5);

  const runs: number[] = [];
  const watchRuns = setInterval(() => {
    if (rollups.loop.stats.runs > runs.length) runs.push(rollups.loop.stats.lastMs);
  }, 5);
  const worker = new Worker(UPLOADER, {
    eval: true,
    workerData: { url, token: uploader, clients: CLIENTS, batch: BATCH, seconds: SECONDS },
  });
  let failed = 0;
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (m: { done?: boolean; failed?: number; error?: string }) => {
      if (m.error) process.stderr.write(`upload refused: ${m.error}\n`);
      if (m.done) {
        failed = m.failed ?? 0;
        resolve();
      }
    });
    worker.once('error', reject);
  });
  await worker.terminate();
  const end = performance.now();
  await rollups.loop.idle();
  await new Promise((r) => setTimeout(r, 50));
  clearInterval(poll);
  clearInterval(watchRuns);
  offAdvance();
  await app.close();
  await room.close();
  await scratch?.drop();
  rmSync(dir, { recursive: true, force: true });
  if (failed) throw new Error(`${failed} uploads were refused`);

  const span = Math.min(end - t0, SECONDS * 1000) / ROUNDS;
  const lag: number[][] = Array.from({ length: ROUNDS }, () => []);
  const arrived = new Array<number>(ROUNDS).fill(0);
  const visible = new Array<number>(ROUNDS).fill(0);
  for (const { at, rolledAt } of landed.values()) {
    const w = windowOf(at);
    if (at - t0 > SECONDS * 1000) continue;
    arrived[w]! += BATCH;
    if (rolledAt !== undefined) lag[w]!.push(rolledAt - at);
    if (rolledAt !== undefined && rolledAt - t0 <= (w + 1) * span) visible[w]! += BATCH;
  }
  const ratios = readMs.map((r, w) => pct(r, 0.5) / pct(directMs[w]!, 0.5));
  // A window without a fresh read (a long read can take one's whole span) has no value: the row
  // spreads over the windows that have one, and says how many.
  const some = (xs: number[]) => xs.filter((x) => Number.isFinite(x));
  const row = (name: string, xs: number[], f: (x: number) => string) => {
    const known = some(xs);
    const note = known.length < xs.length ? ` (${known.length} of ${xs.length} windows had one)` : '';
    return `| ${name}${note} | ${spread(known, f)} |`;
  };
  const ms = (x: number) => x.toFixed(0);
  const r2 = (x: number) => x.toFixed(2);
  const total = [...landed.keys()].length * BATCH;
  console.log(
    `\n### Fresh reads — npm run bench:fresh (${CLIENTS} uploaders of ${BATCH.toLocaleString('en')}-point NDJSON batches without pause, ${SECONDS} s in ${ROUNDS} windows; control plane ${scratch ? 'PostgreSQL' : 'PGlite'})\n`,
  );
  console.log(
    `${total.toLocaleString('en')} points landed (${((total / (end - t0)) * 1000).toFixed(0)} points/s); ${readMs.flat().length} fresh series reads and ${directMs.flat().length} direct queries.\n`,
  );
  console.log(
    `The rollups caught up in ${runs.length} runs (p50 ${ms(pct(runs, 0.5))} ms, max ${ms(Math.max(...runs))} ms each), each refreshing every period the batches since the last run touched.\n`,
  );
  console.log('| measure, per window | min | median | max |');
  console.log('|---|---|---|---|');
  console.log(
    row(
      'rollup lag p50, ms',
      lag.map((l) => pct(l, 0.5)),
      ms,
    ),
  );
  console.log(
    row(
      'rollup lag p95, ms (target ≤ 1,000)',
      lag.map((l) => pct(l, 0.95)),
      ms,
    ),
  );
  console.log(
    row(
      'rollup lag max, ms',
      lag.map((l) => Math.max(...l)),
      ms,
    ),
  );
  console.log(
    row(
      'points visible to fast reads / points landed (target ≥ 0.5)',
      visible.map((v, w) => v / arrived[w]!),
      r2,
    ),
  );
  console.log(
    row(
      'series read right after a batch, p50 ms',
      readMs.map((r) => pct(r, 0.5)),
      ms,
    ),
  );
  console.log(
    row(
      'the same aggregate directly on DuckDB, p50 ms',
      directMs.map((r) => pct(r, 0.5)),
      ms,
    ),
  );
  console.log(row('fresh read / direct DuckDB (target ≤ 1.2)', ratios, r2));
  console.log(
    `summary: rollup lag p95 ${ms(
      pct(
        lag.map((l) => pct(l, 0.95)),
        0.5,
      ),
    )} ms, visible rate ${r2(
      pct(
        visible.map((v, w) => v / arrived[w]!),
        0.5,
      ),
    )}× ingest, fresh read ${r2(pct(some(ratios), 0.5))}× direct DuckDB (medians of ${ROUNDS} windows)`,
  );
}

await main();
