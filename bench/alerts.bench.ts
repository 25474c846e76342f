/**
 * npm run bench:alerts — (1) the time from a batch's 2xx to its signed webhook's arrival at a
 * local receiver, p50 and p95 over BENCH_BREACHES breaches (each batch breaches a fresh KPI:
 * one incident, one webhook); (2) the ingest rate with evaluation on against evaluation off,
 * measured in the same run on identical rooms and batches, alternating to even out noise.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { webhookSecret } from '../services/alerts/notifier.js';
import { createToken } from '../services/governance/token-repository.js';
import { buildApp } from '../assembly/app.js';
import { loadConfig } from '../services/platform/config.js';
import { demoAgreementFile } from '../services/platform/paths.js';
import { openRoom } from '../assembly/open-room.js';
import { localToday, shiftDays } from '../services/platform/calendar.js';
import { createScratchDatabase } from '../tests/helpers/scratch-db.js';

const BREACHES = Number(process.env['BENCH_BREACHES'] ?? 200);
const INGEST_POINTS = Number(process.env['BENCH_POINTS'] ?? 1_000_000);
const BATCH = Number(process.env['BENCH_BATCH'] ?? 50_000);
const ROUNDS = Math.max(3, Number(process.env['BENCH_ROUNDS'] ?? 3));
const PG_ADMIN = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const fmt = (n: number) => Math.round(n).toLocaleString('en');
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

async function scratch(): Promise<{ url: string; drop: () => Promise<void> } | undefined> {
  try {
    return await createScratchDatabase(PG_ADMIN);
  } catch {
    return undefined; // no server: embedded PGlite
  }
}

async function startRoom(agreementFile: string, env: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'parity-bench-alerts-'));
  const db = await scratch();
  const room = await openRoom(
    loadConfig({
      PARITY_DATA_DIR: dir,
      PARITY_AGREEMENT: agreementFile,
      LOG_LEVEL: 'warn',
      ...(db ? { DATABASE_URL: db.url } : {}),
      ...env,
    }),
  );
  const app = await buildApp(room);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const token = (await createToken(room.control.db, { partnerId: 'acme', role: 'ingest', name: 'bench' }, new Date()))
    .token;
  return {
    room,
    app,
    url,
    token,
    pg: Boolean(db),
    close: async () => {
      await app.close();
      await room.close();
      await db?.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** BREACHES KPIs, each a combined figure with a static band that one small batch breaches. */
function breachAgreement(hook: string): string {
  const doc = {
    partnership: { id: 'bench', title: 'Alert benchmark', timezone: 'Europe/Berlin' },
    partners: [
      { id: 'acme', name: 'Acme' },
      { id: 'globex', name: 'Globex' },
    ],
    steering: [{ name: 'Chair', email: 'chair@example.org' }],
    twoPartyConsent: true,
    kpis: Array.from({ length: BREACHES }, (_, i) => ({
      id: `k${String(i).padStart(3, '0')}`,
      title: `KPI ${i}`,
      unit: 'hours',
      subject: 'order',
      measure: 'avg',
      grains: ['day'],
      disclosure: 'partnership',
      breakdown: 'combined',
      band: { upper: 10 },
      evaluate: { grain: 'day', consecutive: 1 },
      freshness: { every: 'P1D', grace: 'PT6H' },
      owners: { acme: { name: 'Ana', email: 'ana@acme.example', webhook: hook } },
      escalation: { ackWithin: 'P2D' },
    })),
  };
  const file = join(mkdtempSync(join(tmpdir(), 'parity-bench-agreement-')), 'agreement.json');
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

async function latency(): Promise<{ p50: number; p95: number; max: number; pg: boolean }> {
  const arrivals = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  let secret = '';
  let verified = 0;
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      const body = Buffer.concat(chunks).toString('utf8');
      const payload = new Webhook(secret).verify(body, req.headers as Record<string, string>) as {
        data: { kpi: { id: string } };
      };
      verified++;
      arrivals.set(payload.data.kpi.id, at);
      waiters.get(payload.data.kpi.id)?.();
      res.statusCode = 204;
      res.end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const s = await startRoom(breachAgreement(hook), { PARITY_EVALUATE_EVERY_SECONDS: '3600' });
  secret = webhookSecret(s.room.secret, 'acme', hook);
  await s.app.alerts!.engine.idle(); // the start-up evaluation of every KPI
  const yesterday = shiftDays(localToday(new Date(), 'Europe/Berlin'), -1);
  const samples: number[] = [];
  process.stderr.write(`${BREACHES} breaches, one batch each…\n`);
  for (let i = 0; i < BREACHES; i++) {
    const kpi = `k${String(i).padStart(3, '0')}`;
    const body = Array.from({ length: 5 }, (_, j) =>
      JSON.stringify({ kpi, at: `${yesterday}T10:0${j}:00Z`, value: 50, subject: `o-${i}-${j}` }),
    ).join('\n');
    const arrived = new Promise<void>((r) => waiters.set(kpi, r));
    const res = await fetch(`${s.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/x-ndjson' },
      body,
    });
    const acked = performance.now();
    if (res.status !== 202) throw new Error(`push ${i}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
    await arrived;
    samples.push(arrivals.get(kpi)! - acked);
  }
  await s.close();
  receiver.close();
  if (verified !== BREACHES) throw new Error(`expected ${BREACHES} verified webhooks, got ${verified}`);
  return { p50: quantile(samples, 0.5), p95: quantile(samples, 0.95), max: Math.max(...samples), pg: s.pg };
}

function ingestBodies(): string[] {
  // Yesterday's midnight, UTC: today's local midnight in Berlin is still in the future between
  // 22:00 (23:00 in winter) and midnight UTC, and points in the future are refused.
  const base = Date.parse(`${shiftDays(localToday(new Date(), 'Europe/Berlin'), -1)}T00:00:00Z`);
  const bodies: string[] = [];
  for (let off = 0; off < INGEST_POINTS; off += BATCH) {
    const lines: string[] = [];
    for (let k = off; k < Math.min(INGEST_POINTS, off + BATCH); k++) {
      const rate = k % 2 === 1;
      lines.push(
        JSON.stringify({
          kpi: rate ? 'error_rate' : 'lead_time',
          at: new Date(base - (k % 700) * 86_400_000 - (k % 36_000) * 1000).toISOString(),
          value: rate ? (k % 31 === 0 ? 1 : 0) : 10 + (k % 900) / 10,
          subject: `ORD-${k.toString().padStart(9, '0')}`,
          dims: { region: k % 5 < 3 ? 'north' : 'south' },
        }),
      );
    }
    bodies.push(lines.join('\n') + '\n');
  }
  return bodies;
}

const evaluationsDuringIngest: number[] = [];

async function ingestRate(alerts: boolean, bodies: string[]): Promise<number> {
  const s = await startRoom(demoAgreementFile(), { PARITY_ALERTS: alerts ? 'on' : 'off', PARITY_MAX_BODY: '1gib' });
  if (alerts) await s.app.alerts!.engine.idle();
  const t0 = performance.now();
  for (const body of bodies) {
    const res = await fetch(`${s.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/x-ndjson' },
      body,
    });
    if (res.status !== 202) throw new Error(`ingest: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }
  const rate = INGEST_POINTS / ((performance.now() - t0) / 1000);
  if (alerts) evaluationsDuringIngest.push(s.app.alerts!.engine.stats.runs - 1);
  await s.close();
  return rate;
}

async function main() {
  const lat = await latency();
  const bodies = ingestBodies();
  const off: number[] = [];
  const on: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved: which room goes first alternates, so a machine that slows or warms within a
    // round does not always favour the same one.
    const onFirst = r % 2 === 1;
    process.stderr.write(`ingest round ${r + 1}/${ROUNDS}: evaluation ${onFirst ? 'on, then off' : 'off, then on'}…\n`);
    for (const alerts of onFirst ? [true, false] : [false, true])
      (alerts ? on : off).push(await ingestRate(alerts, bodies));
  }
  const median = (xs: number[]) => quantile(xs, 0.5);
  // Per round: evaluation on / off, measured back to back.
  const ratios = on.map((x, i) => x / off[i]!).sort((a, b) => a - b);
  const slowdown = 1 - median(ratios);
  const lines = [
    `Alerts benchmark: ${BREACHES} breaches; ingest ${fmt(INGEST_POINTS)} points in batches of ${fmt(BATCH)}, ${ROUNDS} interleaved rounds (evaluation off and on, which first alternating); ${process.platform} ${process.arch}, ${cpus().length} cores, node ${process.version}; control plane ${lat.pg ? 'PostgreSQL' : 'PGlite'}`,
    '',
    '| measure | value | target |',
    '|---|---:|---|',
    `| batch 2xx → signed webhook arrives, p50 | ${lat.p50.toFixed(1)} ms | |`,
    `| batch 2xx → signed webhook arrives, p95 | ${lat.p95.toFixed(1)} ms | ≤ 2 s: ${lat.p95 <= 2000 ? 'met' : 'MISSED'} |`,
    `| batch 2xx → signed webhook arrives, max | ${lat.max.toFixed(1)} ms | |`,
    `| ingest, evaluation off (median) | ${fmt(median(off))} points/s | |`,
    `| ingest, evaluation on (median) | ${fmt(median(on))} points/s | |`,
    `| ingest with evaluation / without, per round (min / median / max) | ${ratios[0]!.toFixed(2)} / ${median(ratios).toFixed(2)} / ${ratios.at(-1)!.toFixed(2)} | |`,
    `| ingest slowed by evaluation (median round) | ${(slowdown * 100).toFixed(1)} % | ≤ 10 %: ${slowdown <= 0.1 ? 'met' : 'MISSED'} |`,
    `| evaluations while ${bodies.length} batches landed (per round) | ${evaluationsDuringIngest.join(', ')} | |`,
    '',
    `summary: webhook p95 ${lat.p95.toFixed(0)} ms after the batch's 2xx; ingest with evaluation at ${median(ratios).toFixed(2)}× without (median of ${ROUNDS} rounds)`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
