/**
 * npm run bench:query — latency of GET /v1/kpis/{kpi}/series (week grain, by partner, two
 * years) over N landed points, for every demo KPI, against baselines measured in the same run:
 * the rollup read the server runs, in-process on the same DuckDB file (the ceiling of the
 * served path), the compiled SQL over the points (what the rollup saves), and the equivalent
 * query on a plain indexed PostgreSQL table (what a team would run without Parity). Every HTTP
 * cell is checked against the compiled SQL over the points: the rollup must be exact.
 *
 * Points are generated straight into the room's DuckDB file with one INSERT … FROM range(N),
 * so sizes of 10^8 load in minutes. Environment:
 *   BENCH_QUERY_SIZES     comma-separated point counts (default 10000000,100000000)
 *   BENCH_QUERY_REPEAT    timed runs per KPI and path, after 2 warm-ups (10 for rollup reads and HTTP) (default 20)
 *   BENCH_QUERY_ROUNDS    interleaved rounds (≥ 3) of HTTP cold and the in-process rollup read, REPEAT runs
 *                         per KPI each: the cold / read ratio and the cold p95 get min / median / max (default 3)
 *   BENCH_QUERY_POINTS_REPEAT timed runs per KPI of the compiled SQL over the points, the slow
 *                         reference every HTTP cell is checked against (default BENCH_QUERY_REPEAT;
 *                         at 10^8 points each run takes a minute)
 *   BENCH_QUERY_PG_REPEAT timed PostgreSQL runs per KPI, after 1 warm-up (default 5)
 *   BENCH_QUERY_PG_MAX    largest size also loaded into PostgreSQL (default 10000000)
 *   DATABASE_URL          PostgreSQL server for the baseline (default postgres://postgres@127.0.0.1:5432/postgres)
 *   PARITY_DUCKDB_MEMORY  DuckDB memory limit of the server, used for the in-process run too (default: the room's, 256MB)
 */
import { disclosureRules } from '../services/query/disclosure.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DuckDBInstance, type DuckDBConnection, type DuckDBValue } from '@duckdb/node-api';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { loadAgreementFile, type Agreement, type Kpi } from '../services/platform/agreement-schema.js';
import { createToken } from '../services/governance/token-repository.js';
import { compileSeries, rawCellOf, type SeriesQuery } from '../services/query/aggregate-compiler.js';
import { patchPlan, patchSeries, refreshSteps, rollupBreakdowns, rollupReadSql } from '../services/query/rollups.js';
import { breakdownKey, measureSql } from '../services/query/aggregate-compiler.js';
import { disclose } from '../services/query/disclosure.js';
import { releaser } from '../services/query/release.js';
import { loadConfig } from '../services/platform/config.js';
import { touchedDaysSql } from '../services/platform/duck-store.js';
import { demoAgreementFile, packageRoot } from '../services/platform/paths.js';
import { openRoom } from '../assembly/open-room.js';
import { createScratchDatabase, postgresAnswers as answers } from '../tests/helpers/scratch-db.js';
import { freePort } from '../tests/helpers/spawn-room.js';
import { medianOf, spread } from './rounds.js';
import { SEEDED_KPIS, seedPoints } from './seed.js';

const env = process.env;
const SIZES = (env['BENCH_QUERY_SIZES'] ?? '10000000,100000000')
  .split(',')
  .map((s) => s.trim().replaceAll('_', ''))
  .filter(Boolean)
  .map((s) => {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n < 1 || n > 4_000_000_000)
      throw new Error(`BENCH_QUERY_SIZES: ${s} is not a point count`);
    return n;
  });
const REPEAT = positive('BENCH_QUERY_REPEAT', 20);
const PG_REPEAT = positive('BENCH_QUERY_PG_REPEAT', 5);
const POINTS_REPEAT = positive('BENCH_QUERY_POINTS_REPEAT', REPEAT);
const PG_MAX = positive('BENCH_QUERY_PG_MAX', 10_000_000);
const WARMUP = 2;
// Rollup reads and HTTP requests are cheap: more warm-ups let the server's JIT settle, as in a running room.
const FAST_WARMUP = 10;
const PG_WARMUP = 1;
const REFRESH_REPEAT = positive('BENCH_QUERY_REFRESH_REPEAT', 5);
// Cold HTTP and the in-process rollup read alternate (the server holds the DuckDB file while it
// runs): each round is a fresh server's cold reads, then the same reads in-process.
const ROUNDS = Math.max(3, positive('BENCH_QUERY_ROUNDS', 3));
const PG_URL = env['DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres';
const DUCK_MEMORY = loadConfig({ PARITY_DUCKDB_MEMORY: env['PARITY_DUCKDB_MEMORY'] ?? '' }).duckdbMemory;
const TO = '2026-11-22';
const FROM = new Date(Date.parse(TO) - 730 * 86_400_000).toISOString().slice(0, 10);

function positive(name: string, def: number): number {
  const v = env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v.replaceAll('_', ''));
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}: expected a positive whole number`);
  return n;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en');
const ms = (n: number | undefined) =>
  n === undefined ? 'n/a' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0);
const ratio = (n: number) => (n < 10 ? n.toFixed(2) : n.toFixed(0)) + '×';
const t0 = performance.now();
const log = (msg: string) =>
  process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);

/** Nearest-rank percentile of a sample. */
function pct(sample: readonly number[], p: number): number | undefined {
  if (sample.length === 0) return undefined;
  const s = [...sample].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

// ---------------------------------------------------------------------------------------------
// Cleanup: child processes, temp paths and scratch databases go even when something throws.
// ---------------------------------------------------------------------------------------------
const children = new Set<ChildProcess>();
const tempPaths = new Set<string>();
const scratchDrops = new Set<() => Promise<void>>();

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempPaths.add(d);
  return d;
}

function removeTemp(p: string): void {
  rmSync(p, { recursive: true, force: true });
  tempPaths.delete(p);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(timer);
  }
  children.delete(child);
}

async function cleanup(): Promise<void> {
  for (const c of [...children]) await stopChild(c).catch(() => undefined);
  for (const drop of [...scratchDrops]) {
    await drop().catch((err: unknown) => log(`could not drop a scratch database: ${String(err)}`));
    scratchDrops.delete(drop);
  }
  for (const p of [...tempPaths]) removeTemp(p);
}

process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const p of tempPaths) rmSync(p, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

interface Row {
  period: string;
  grp: string | null;
  value: number | null;
  n: number;
  /** The disclosure columns (direct rows only; PostgreSQL rows leave them out). */
  minPart?: number;
  partners?: number;
  protects?: boolean;
  dominated?: boolean;
}

interface HttpCell {
  period: string;
  group: string | null;
  value: number | null;
  n: number | null;
  state: string;
}

interface KpiResult {
  times: number[];
  error?: string;
}

type PathResult = Map<string, KpiResult>;

function seriesQuery(kpi: Kpi, agreement: Agreement): SeriesQuery {
  return {
    kpi,
    grain: 'week',
    from: FROM,
    to: TO,
    by: { kind: 'partner' },
    snapshot: 1,
    timezone: agreement.partnership.timezone,
    rules: disclosureRules(agreement, kpi),
  };
}

async function readRows(c: DuckDBConnection, sql: string, params: (string | number)[]): Promise<Row[]> {
  const r = await c.runAndReadAll(sql, params);
  return r.getRowObjectsJson().map((row) => ({
    period: String(row['period']),
    grp: row['grp'] == null ? null : String(row['grp']),
    value: row['value'] == null ? null : Number(row['value']),
    n: Number(row['n']),
    minPart: Number(row['min_part']),
    partners: Number(row['partners']),
    protects: row['protects'] === true,
    dominated: row['dominated'] === true,
  }));
}

/** The compiled SQL in-process, with the server's DuckDB settings; also returns the reference rows. */
async function measureDirect(
  file: string,
  agreement: Agreement,
  kpis: Kpi[],
  csvFile: string | undefined,
): Promise<{ result: PathResult; rows: Map<string, Row[]> }> {
  const db = await DuckDBInstance.create(file, {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'true',
    memory_limit: DUCK_MEMORY,
  });
  const c = await db.connect();
  const result: PathResult = new Map();
  const rows = new Map<string, Row[]>();
  try {
    for (const kpi of kpis) {
      const { sql, params } = compileSeries(seriesQuery(kpi, agreement));
      const r: KpiResult = { times: [] };
      result.set(kpi.id, r);
      try {
        for (let i = 0; i < WARMUP + POINTS_REPEAT; i++) {
          const started = performance.now();
          const got = await readRows(c, sql, params);
          const t = performance.now() - started;
          if (i >= WARMUP) r.times.push(t);
          else rows.set(kpi.id, got);
        }
      } catch (err) {
        r.error = err instanceof Error ? err.message.split('\n')[0]! : String(err);
      }
      log(
        `  direct ${kpi.id}: ${rows.get(kpi.id)?.length ?? 0} rows, p50 ${ms(pct(r.times, 0.5))} ms, p95 ${ms(pct(r.times, 0.95))} ms${r.error ? ` ERROR ${r.error}` : ''}`,
      );
    }
    if (csvFile) {
      log('  exporting the points to CSV for PostgreSQL…');
      await c.run("SET TimeZone = 'UTC'");
      await c.run(
        `COPY (SELECT partner, kpi, ts::VARCHAR AS ts, value, subject, dims FROM points) TO '${csvFile.replaceAll("'", "''")}' (FORMAT csv, HEADER false)`,
      );
    }
  } finally {
    c.closeSync();
    db.closeSync();
  }
  return { result, rows };
}

/** Waits until the server's rollups include every landed batch (first start: the build); its duration. */
async function rolledUp(url: string, operator: string): Promise<number> {
  const started = performance.now();
  const deadline = Date.now() + 3_600_000;
  while (Date.now() < deadline) {
    const m = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${operator}` } })).text();
    if (/^parity_rollup_current 1$/m.test(m)) return (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the rollups did not become current within an hour');
}

/** The day a simulated batch touches: a mid-month Wednesday inside the benchmark's two years. */
const TOUCHED = '2025-11-12';

/**
 * The per-batch rollup refresh of issue #3, as the room ran it before disclosure control: for each
 * grain × breakdown, the cells of the periods holding the touched day recomputed by the plain
 * aggregate (no per-partner parts, no linked points). The baseline of the refresh ratio.
 */
function legacyRefreshSteps(kpi: Kpi, day: string): { sql: string; params: (string | number)[] }[] {
  const out: { sql: string; params: (string | number)[] }[] = [];
  for (const grain of kpi.grains)
    for (const by of rollupBreakdowns(kpi)) {
      const group =
        by.kind === 'partner'
          ? 'partner'
          : by.kind === 'dimension'
            ? `json_extract_string(dims, '$.${by.key}')`
            : 'NULL::VARCHAR';
      const g = `'${grain}'`;
      out.push({
        sql: `DELETE FROM rollup_cells WHERE kpi = $1 AND grain = $2 AND breakdown = $3 AND period = strftime(date_trunc(${g}, $4::DATE), '%Y-%m-%d')`,
        params: [kpi.id, grain, breakdownKey(by), day],
      });
      out.push({
        sql: [
          'INSERT INTO rollup_cells (kpi, grain, breakdown, period, grp, value, n)',
          `SELECT $1, $2, $3, strftime(date_trunc(${g}, local_day), '%Y-%m-%d'), ${group}, ${measureSql[kpi.measure]}::DOUBLE, count(DISTINCT subject)::INTEGER`,
          'FROM points WHERE kpi = $1 AND snapshot <= $5',
          `  AND local_day >= date_trunc(${g}, $4::DATE) AND local_day < date_trunc(${g}, $4::DATE) + INTERVAL 1 ${grain.toUpperCase()}`,
          'GROUP BY ALL',
        ].join('\n'),
        params: [kpi.id, grain, breakdownKey(by), day, 1],
      });
    }
  return out;
}

/** Per KPI, the per-batch times of measureRefresh (ms). */
interface RefreshTimes {
  now: number[];
  before: number[];
  release: number[];
  /** The series read before that refresh: the rollup patched with the periods the day moves. */
  patched: number[];
}

/**
 * The per-batch rollup refresh for a batch touching one day, in-process on the same file: the steps
 * the maintainer runs now (cells, per-partner parts and linked points of every cell the day can
 * affect) against the legacy steps, each in a transaction that is rolled back.
 */
async function measureRefresh(
  file: string,
  agreement: Agreement,
  kpis: Kpi[],
  reference: Map<string, Row[]>,
  problems: string[],
): Promise<Map<string, RefreshTimes>> {
  const db = await DuckDBInstance.create(file, {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'true',
    memory_limit: DUCK_MEMORY,
  });
  const c = await db.connect();
  const out = new Map<string, RefreshTimes>();
  const exec = {
    run: async (sql: string, params: DuckDBValue[] = []) => Number((await c.run(sql, params)).rowsChanged),
    all: async (sql: string, params: DuckDBValue[] = []) => (await c.runAndReadAll(sql, params)).getRowObjectsJson(),
  };
  const release = releaser(() => agreement);
  const newest = Number((await c.runAndReadAll('SELECT max(snapshot) AS s FROM points')).getRowObjectsJson()[0]!['s']);
  // The release step of a batch holding every point of the day (the batch is the change it decides on).
  const timedRelease = async (kpi: Kpi) => {
    const started = performance.now();
    await c.run('BEGIN TRANSACTION');
    try {
      await c.run(
        'INSERT INTO held_atoms (kpi, partner, snapshot, local_day, dims) SELECT DISTINCT kpi, partner, snapshot, local_day, dims FROM points WHERE kpi = $1 AND local_day = $2::DATE',
        [kpi.id, TOUCHED],
      );
      await release(exec, newest, [kpi.id]);
    } finally {
      await c.run('ROLLBACK');
    }
    return performance.now() - started;
  };
  // The benchmark's series read while that batch is not rolled up yet, as readRollup runs it: the
  // lookup of the days touched since the rollup (here after the newest snapshot, so it finds
  // none: a scan the zone maps cut short, as they do for a live room's newest rows), the rollup's
  // read and the compiled SQL of the periods the day can move, merged; checked against the
  // points' rows. The rollup here already holds the day (the file's points are all landed), so
  // the check covers the moved ranges' statements and the merge; tests check the reach.
  const timedPatched = async (kpi: Kpi) => {
    const q = seriesQuery(kpi, agreement);
    const started = performance.now();
    await c.runAndReadAll(
      `SELECT kpi, local_day::VARCHAR AS day FROM (${touchedDaysSql(true)}) AS days GROUP BY kpi, local_day ORDER BY kpi, local_day`,
      [newest, newest, kpi.id],
    );
    const read = rollupReadSql(q);
    const rolled = (await c.runAndReadAll(read.sql, read.params))
      .getRowObjectsJson()
      .filter((row) => row['period'] !== null)
      .map(rawCellOf);
    const cells = await patchSeries(q, rolled, patchPlan(q, [[TOUCHED, TOUCHED]]), async (s) =>
      (await c.runAndReadAll(s.sql, s.params as DuckDBValue[])).getRowObjectsJson(),
    );
    const took = performance.now() - started;
    const want = reference.get(kpi.id);
    if (want && want.length !== cells.length)
      problems.push(`patched read ${kpi.id}: ${cells.length} cells, the points give ${want.length}`);
    else if (want)
      cells.forEach((cell, j) => {
        const w = want[j]!;
        if (
          cell.period !== w.period ||
          cell.group !== w.grp ||
          cell.n !== w.n ||
          !close(cell.value, w.value) ||
          cell.minPart !== w.minPart ||
          cell.partners !== w.partners ||
          cell.protects !== w.protects ||
          cell.dominated !== w.dominated
        )
          problems.push(
            `patched read ${kpi.id} ${cell.period} ${cell.group}: ${cell.value} / n ${cell.n}, the points give ${w.value} / n ${w.n}`,
          );
      });
    return took;
  };
  const timed = async (steps: Iterable<{ sql: string; params: (string | number)[] }>) => {
    const started = performance.now();
    await c.run('BEGIN TRANSACTION');
    try {
      for (const s of steps) await c.run(s.sql, s.params);
    } finally {
      await c.run('ROLLBACK');
    }
    return performance.now() - started;
  };
  try {
    for (const kpi of kpis) {
      const r: RefreshTimes = { now: [], before: [], release: [], patched: [] };
      out.set(kpi.id, r);
      for (let i = 0; i < 1 + REFRESH_REPEAT; i++) {
        const before = await timed(legacyRefreshSteps(kpi, TOUCHED));
        const now = await timed(refreshSteps(kpi, disclosureRules(agreement, kpi), newest, [[TOUCHED, TOUCHED]]));
        const rel = await timedRelease(kpi);
        const patched = await timedPatched(kpi);
        if (i > 0) {
          r.before.push(before);
          r.now.push(now);
          r.release.push(rel);
          r.patched.push(patched);
        }
      }
      log(
        `  refresh ${kpi.id}: now p50 ${ms(pct(r.now, 0.5))} ms + release ${ms(pct(r.release, 0.5))} ms, before p50 ${ms(pct(r.before, 0.5))} ms (${ratio((pct(r.now, 0.5)! + pct(r.release, 0.5)!) / pct(r.before, 0.5)!)}); read before it, patched: p50 ${ms(pct(r.patched, 0.5))} ms`,
      );
    }
  } finally {
    c.closeSync();
    db.closeSync();
  }
  return out;
}

/** The rollup read the server runs for each series, in-process on the same file: the ceiling of the served path. */
async function measureRollupRead(file: string, agreement: Agreement, kpis: Kpi[]): Promise<PathResult> {
  const db = await DuckDBInstance.create(file, {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'true',
    memory_limit: DUCK_MEMORY,
  });
  const c = await db.connect();
  const result: PathResult = new Map();
  try {
    for (const kpi of kpis) {
      const { sql, params } = rollupReadSql(seriesQuery(kpi, agreement));
      const r: KpiResult = { times: [] };
      result.set(kpi.id, r);
      try {
        for (let i = 0; i < FAST_WARMUP + REPEAT; i++) {
          const started = performance.now();
          await c.runAndReadAll(sql, params);
          if (i >= FAST_WARMUP) r.times.push(performance.now() - started);
        }
      } catch (err) {
        r.error = err instanceof Error ? err.message.split('\n')[0]! : String(err);
      }
      log(
        `  rollup read ${kpi.id}: p50 ${ms(pct(r.times, 0.5))} ms, p95 ${ms(pct(r.times, 0.95))} ms${r.error ? ` ERROR ${r.error}` : ''}`,
      );
    }
  } finally {
    c.closeSync();
    db.closeSync();
  }
  return result;
}

async function startServer(dataDir: string, cache: 'off' | 'default'): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  // Alerts off: their scheduled evaluations would run queries of their own during the timing.
  const childEnv: NodeJS.ProcessEnv = {
    ...env,
    DATABASE_URL: '',
    PARITY_DATA_DIR: dataDir,
    PARITY_AGREEMENT: demoAgreementFile(),
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    PARITY_ALERTS: 'off',
  };
  if (cache === 'off') childEnv['PARITY_QUERY_CACHE'] = 'off';
  else delete childEnv['PARITY_QUERY_CACHE'];
  const child = spawn(process.execPath, [join(packageRoot(), 'bin/parity.js'), 'serve'], {
    env: childEnv,
    stdio: ['ignore', 2, 2],
  });
  children.add(child);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the server exited during start-up (${child.exitCode ?? child.signalCode})`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { child, url };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stopChild(child);
  throw new Error('the server did not answer /healthz within 300 s');
}

async function measureHttp(
  url: string,
  token: string,
  kpis: Kpi[],
  label: string,
): Promise<{ result: PathResult; bodies: Map<string, { cells: HttpCell[]; digest: string }> }> {
  const result: PathResult = new Map();
  const bodies = new Map<string, { cells: HttpCell[]; digest: string }>();
  for (const kpi of kpis) {
    const r: KpiResult = { times: [] };
    result.set(kpi.id, r);
    const target = `${url}/v1/kpis/${encodeURIComponent(kpi.id)}/series?grain=week&by=partner&from=${FROM}&to=${TO}`;
    try {
      for (let i = 0; i < FAST_WARMUP + REPEAT; i++) {
        const started = performance.now();
        const res = await fetch(target, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
        const text = await res.text();
        const t = performance.now() - started;
        if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
        if (i >= FAST_WARMUP) r.times.push(t);
        const body = JSON.parse(text) as { cells: HttpCell[]; digest: string };
        const prev = bodies.get(kpi.id);
        if (!prev) bodies.set(kpi.id, body);
        else if (prev.digest !== body.digest)
          throw new Error(`run ${i + 1} answered digest ${body.digest}, run 1 ${prev.digest}`);
      }
    } catch (err) {
      r.error = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    }
    log(
      `  ${label} ${kpi.id}: ${bodies.get(kpi.id)?.cells.length ?? 0} cells, p50 ${ms(pct(r.times, 0.5))} ms, p95 ${ms(pct(r.times, 0.95))} ms${r.error ? ` ERROR ${r.error}` : ''}`,
    );
  }
  return { result, bodies };
}

function pgMeasureSql(kpi: Kpi): string {
  const m: Record<string, string> = {
    avg: 'avg(value)',
    sum: 'sum(value)',
    count: 'count(*)',
    rate: 'avg(value)',
    p50: 'percentile_cont(0.5) WITHIN GROUP (ORDER BY value)',
    p90: 'percentile_cont(0.9) WITHIN GROUP (ORDER BY value)',
    p95: 'percentile_cont(0.95) WITHIN GROUP (ORDER BY value)',
    distinct: 'count(DISTINCT subject)',
  };
  return [
    `SELECT to_char(date_trunc('week', ts AT TIME ZONE $1), 'YYYY-MM-DD') AS period, partner AS grp,`,
    `  (${m[kpi.measure]})::double precision AS value, count(DISTINCT subject)::int AS n`,
    `FROM points`,
    `WHERE kpi = $2`,
    `  AND ts >= (date_trunc('week', $3::timestamp) AT TIME ZONE $1)`,
    `  AND ts < ((date_trunc('week', $4::timestamp) + interval '1 week') AT TIME ZONE $1)`,
    `GROUP BY 1, 2`,
    `ORDER BY 1, 2`,
  ].join('\n');
}

interface PgOutcome {
  result: PathResult;
  rows: Map<string, Row[]>;
  loadSeconds: number;
}

async function measurePostgres(csvFile: string, agreement: Agreement, kpis: Kpi[]): Promise<PgOutcome> {
  const scratch = await createScratchDatabase(PG_URL, 'parity_bench_q');
  scratchDrops.add(scratch.drop);
  const client = new pg.Client({ connectionString: scratch.url });
  await client.connect();
  try {
    const started = performance.now();
    await client.query(
      'CREATE TABLE points (partner text, kpi text, ts timestamptz, value double precision, subject text, dims jsonb)',
    );
    log(`  PostgreSQL: COPY ${fmt(statSync(csvFile).size / 1e6)} MB of CSV…`);
    await pipeline(
      createReadStream(csvFile, { highWaterMark: 1 << 20 }),
      client.query(copyFrom('COPY points FROM STDIN (FORMAT csv)')),
    );
    log('  PostgreSQL: index on (kpi, ts), ANALYZE…');
    await client.query('CREATE INDEX points_kpi_ts ON points (kpi, ts)');
    await client.query('ANALYZE points');
    const loadSeconds = (performance.now() - started) / 1000;
    const result: PathResult = new Map();
    const rows = new Map<string, Row[]>();
    for (const kpi of kpis) {
      const r: KpiResult = { times: [] };
      result.set(kpi.id, r);
      const text = pgMeasureSql(kpi);
      const values = [agreement.partnership.timezone, kpi.id, FROM, TO];
      try {
        for (let i = 0; i < PG_WARMUP + PG_REPEAT; i++) {
          const s = performance.now();
          const res = await client.query<{ period: string; grp: string | null; value: number | null; n: number }>(
            text,
            values,
          );
          const t = performance.now() - s;
          if (i >= PG_WARMUP) r.times.push(t);
          else
            rows.set(
              kpi.id,
              res.rows.map((x) => ({ period: x.period, grp: x.grp, value: x.value, n: Number(x.n) })),
            );
        }
      } catch (err) {
        r.error = err instanceof Error ? err.message.split('\n')[0]! : String(err);
      }
      log(
        `  PostgreSQL ${kpi.id}: ${rows.get(kpi.id)?.length ?? 0} rows, p50 ${ms(pct(r.times, 0.5))} ms, p95 ${ms(pct(r.times, 0.95))} ms${r.error ? ` ERROR ${r.error}` : ''}`,
      );
    }
    return { result, rows, loadSeconds };
  } finally {
    await client.end().catch(() => undefined);
    await scratch.drop();
    scratchDrops.delete(scratch.drop);
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-checks: every path must give the same numbers.
// ---------------------------------------------------------------------------------------------

const round12 = (v: number) => Number(v.toPrecision(12));
const close = (a: number | null, b: number | null) =>
  a === b || (a !== null && b !== null && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b)));

function checkHttp(
  label: string,
  kpi: Kpi,
  ref: Row[] | undefined,
  body: { cells: HttpCell[] } | undefined,
  rules: ReturnType<typeof disclosureRules>,
  problems: string[],
): void {
  if (!ref || !body) return;
  if (body.cells.length !== ref.length) {
    problems.push(`${label} ${kpi.id}: ${body.cells.length} cells, the direct query returned ${ref.length} rows`);
    return;
  }
  let bad = 0;
  let first = '';
  body.cells.forEach((c, i) => {
    const r = ref[i]!;
    let why = '';
    if (c.period !== r.period || c.group !== r.grp)
      why = `cell ${i} is ${c.period}/${c.group}, direct ${r.period}/${r.grp}`;
    else {
      // What the room must serve for this row: the one disclosure function over the direct row.
      const raw = {
        minPart: r.minPart ?? 0,
        partners: r.partners ?? 0,
        protects: r.protects ?? true,
        dominated: r.dominated ?? true,
        // The benchmark's points are inserted directly, released at once (no held_atoms rows).
        pending: false,
        asOf: null,
        relMinPart: r.minPart ?? 0,
      };
      const [want] = disclose(
        [{ ...r, ...raw, group: r.grp, value: r.value === null ? null : round12(r.value) }],
        rules,
      );
      if (c.state !== want!.state || c.value !== want!.value || c.n !== want!.n)
        why = `${c.period}/${c.group}: ${c.state} value ${c.value} n ${c.n}, direct gives ${want!.state} ${want!.value} n ${want!.n}`;
    }
    if (why) {
      bad++;
      first ||= why;
    }
  });
  if (bad) problems.push(`${label} ${kpi.id}: ${bad} cells differ from the direct query (first: ${first})`);
}

function checkPostgres(kpi: Kpi, ref: Row[] | undefined, got: Row[] | undefined, problems: string[]): void {
  if (!ref || !got) return;
  if (got.length !== ref.length) {
    problems.push(`PostgreSQL ${kpi.id}: ${got.length} rows, DuckDB ${ref.length}`);
    return;
  }
  let bad = 0;
  let first = '';
  got.forEach((g, i) => {
    const r = ref[i]!;
    if (g.period !== r.period || g.grp !== r.grp || g.n !== r.n || !close(g.value, r.value)) {
      bad++;
      first ||= `PostgreSQL ${g.period}/${g.grp} value ${g.value} n ${g.n}, DuckDB ${r.period}/${r.grp} value ${r.value} n ${r.n}`;
    }
  });
  if (bad) problems.push(`PostgreSQL ${kpi.id}: ${bad} rows differ from DuckDB (first: ${first})`);
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/** The runs of two rounds of a path as one result (an error of either is kept). */
function merged(a: PathResult | undefined, b: PathResult): PathResult {
  if (!a) return b;
  const out: PathResult = new Map();
  for (const [id, x] of b) {
    const y = a.get(id);
    const error = y?.error ?? x.error;
    out.set(id, { times: [...(y?.times ?? []), ...x.times], ...(error ? { error } : {}) });
  }
  return out;
}

function pooled(r: PathResult | undefined): { p50?: number; p95?: number; errors: string[] } {
  if (!r) return { errors: [] };
  const all = [...r.values()].flatMap((k) => k.times);
  const errors = [...r.entries()].filter(([, k]) => k.error).map(([id, k]) => `${id}: ${k.error}`);
  const p50 = pct(all, 0.5);
  const p95 = pct(all, 0.95);
  return { ...(p50 === undefined ? {} : { p50 }), ...(p95 === undefined ? {} : { p95 }), errors };
}

interface SizeReport {
  n: number;
  loadSeconds: number;
  pointCounts: Map<string, number>;
  kpis: Kpi[];
  direct: PathResult;
  directRows: Map<string, Row[]>;
  rollupRead?: PathResult;
  refresh?: Map<string, RefreshTimes>;
  rollupSeconds?: number;
  cold?: PathResult;
  /** Per interleaved round: the pooled p95 of HTTP cold and of the in-process rollup read. */
  rounds: { cold?: number; read?: number }[];
  coldCells: Map<string, number>;
  warm?: PathResult;
  pg?: PgOutcome;
  pgNote: string;
  problems: string[];
}

function report(s: SizeReport): string {
  const targetMs = s.n <= 10_000_000 ? 25 : 150;
  const targetNote =
    s.n === 10_000_000 || s.n === 100_000_000 ? '' : s.n < 10_000_000 ? ' (the 10M target)' : ' (the 100M target)';
  const raw = pooled(s.direct);
  // The served path reads the rollup: its ceiling is that read, in-process on the same file.
  const d = pooled(s.rollupRead);
  const cold = pooled(s.cold);
  const warm = pooled(s.warm);
  const pgs = pooled(s.pg?.result);
  const errs = [
    ...raw.errors.map((e) => `direct ${e}`),
    ...d.errors.map((e) => `rollup read ${e}`),
    ...cold.errors.map((e) => `HTTP cold ${e}`),
    ...warm.errors.map((e) => `HTTP warm ${e}`),
    ...pgs.errors.map((e) => `PostgreSQL ${e}`),
  ];
  const incomplete = errs.length > 0 ? ' (incomplete: see errors)' : '';

  const overhead = (p: { p95?: number }, judge: boolean) => {
    if (p.p95 === undefined || d.p95 === undefined) return 'n/a';
    const r = p.p95 / d.p95;
    return judge ? `${ratio(r)}: ${r <= 1.3 && !incomplete ? 'met' : 'MISSED'}` : ratio(r);
  };
  const speedup = (p: { p95?: number }, judge: boolean) => {
    if (pgs.p95 === undefined) return s.pg ? 'n/a' : s.pgNote;
    if (p.p95 === undefined) return 'n/a';
    const r = pgs.p95 / p.p95;
    return judge ? `${ratio(r)}: ${r >= 10 && !incomplete ? 'met' : 'MISSED'}` : ratio(r);
  };
  const target = (p: { p95?: number }, judge: boolean) => {
    if (p.p95 === undefined) return 'n/a';
    return judge ? `${p.p95 <= targetMs && !incomplete ? 'met' : 'MISSED'}` : p.p95 <= targetMs ? '(within)' : '(over)';
  };

  const pgTimesNote = `${PG_REPEAT} runs per KPI after ${PG_WARMUP} warm-up`;
  const roundCold = s.rounds.map((r) => r.cold);
  const roundRead = s.rounds.map((r) => r.read);
  const roundRatio = s.rounds.map((r) => (r.cold !== undefined && r.read ? r.cold / r.read : undefined));
  const lines = [
    `### Query benchmark: ${fmt(s.n)} points`,
    '',
    `GET /v1/kpis/{kpi}/series?grain=week&by=partner&from=${FROM}&to=${TO} for each of the ${s.kpis.length} demo KPIs (steering token), ${REPEAT} sequential runs per KPI and path after ${WARMUP} warm-ups${POINTS_REPEAT === REPEAT ? '' : ` (${POINTS_REPEAT} runs for the compiled SQL over the points)`} (${FAST_WARMUP} for the rollup read and HTTP; PostgreSQL: ${pgTimesNote}); HTTP cold and the rollup read in ${ROUNDS} interleaved rounds (a fresh server each), their runs pooled here; percentiles pooled over all KPIs. ` +
      `${process.platform} ${process.arch}, ${cpus().length} cores, node ${process.version}, DuckDB memory_limit ${DUCK_MEMORY} in the server and in-process. Points loaded into DuckDB in ${s.loadSeconds.toFixed(1)} s (${fmt(s.n / s.loadSeconds)} points/s, one INSERT … FROM range)` +
      (s.pg
        ? `; into PostgreSQL (COPY from CSV, index on (kpi, ts), ANALYZE) in ${s.pg.loadSeconds.toFixed(1)} s.`
        : '.') +
      (s.rollupSeconds !== undefined
        ? ` The server built the rollups of all ${s.kpis.length} KPIs (every agreed grain × breakdown, exact) in ${s.rollupSeconds.toFixed(1)} s at its first start; after that each batch refreshes only the periods it touched.`
        : ''),
    '',
    `| path | p50 ms | p95 ms | HTTP cold overhead vs direct (p95/p95, target ≤ 1.3×) | speed-up vs PostgreSQL (PG p95 / p95, target ≥ 10×) | p95 ≤ ${targetMs} ms${targetNote} |`,
    '|---|---:|---:|---|---|---|',
    `| DuckDB in-process, compiled SQL over the points (no rollup) | ${ms(raw.p50)} | ${ms(raw.p95)} | ${overhead(raw, false)} | ${speedup(raw, false)} | ${target(raw, false)} |`,
    `| DuckDB in-process, the rollup read the server runs (ceiling) | ${ms(d.p50)} | ${ms(d.p95)} | 1.00× (reference) | ${speedup(d, false)} | ${target(d, false)} |`,
    `| HTTP, cold (PARITY_QUERY_CACHE=off) | ${ms(cold.p50)} | ${ms(cold.p95)} | ${overhead(cold, true)} | ${speedup(cold, true)} | ${target(cold, true)} |`,
    `| HTTP, warm (cache on, default) | ${ms(warm.p50)} | ${ms(warm.p95)} | ${overhead(warm, false)} (cached) | ${speedup(warm, false)} | ${target(warm, true)} |`,
    s.pg
      ? `| PostgreSQL, plain table + (kpi, ts) index | ${ms(pgs.p50)} | ${ms(pgs.p95)} | ${overhead(pgs, false)} | 1.00× (reference) | ${target(pgs, false)} |`
      : `| PostgreSQL, plain table + (kpi, ts) index | ${s.pgNote} | | | | |`,
    '',
    `Per round (${ROUNDS} interleaved rounds; in each, ${REPEAT} runs per KPI of HTTP cold on a fresh server, then of the rollup read in-process; p95 pooled over the KPIs of the round):`,
    '',
    '| measure | min | median | max |',
    '|---|---:|---:|---:|',
    `| HTTP cold p95, ms (target ≤ ${targetMs}) | ${spread(roundCold, ms)} |`,
    `| rollup read in-process p95, ms | ${spread(roundRead, ms)} |`,
    `| HTTP cold / rollup read (p95/p95, target ≤ 1.3×) | ${spread(roundRatio, ratio)} |`,
    '',
    '| KPI | measure | points | cells | points SQL p50 / p95 ms | rollup read p50 / p95 ms | HTTP cold p50 / p95 ms | HTTP warm p50 / p95 ms | PostgreSQL p50 / p95 ms |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...s.kpis.map((k) => {
      const cell = (r: PathResult | undefined) => {
        const x = r?.get(k.id);
        if (!x) return 'n/a';
        if (x.error) return 'error';
        return `${ms(pct(x.times, 0.5))} / ${ms(pct(x.times, 0.95))}`;
      };
      return `| ${k.id} | ${k.measure} | ${fmt(s.pointCounts.get(k.id) ?? 0)} | ${s.coldCells.get(k.id) ?? s.directRows.get(k.id)?.length ?? 'n/a'} | ${cell(s.direct)} | ${cell(s.rollupRead)} | ${cell(s.cold)} | ${cell(s.warm)} | ${s.pg ? cell(s.pg.result) : 'skipped'} |`;
    }),
    '',
    ...(s.refresh
      ? [
          `Per-batch rollup refresh for a batch touching one day (${TOUCHED}), in-process, ${REFRESH_REPEAT} runs after 1 warm-up, each in a transaction rolled back: "now" recomputes every cell that day can affect, with the per-partner parts and linked points disclosure control needs; "before" recomputes the plain cells of the periods holding the day, as the room did before (the baseline, target now ≤ 2×); "release" is the release step of stable disclosure for a batch holding every point of that day (its change decided in every readable cell), which each batch now runs before it is visible.`,
          '',
          '| KPI | now p50 / p95 ms | release p50 / p95 ms | before p50 / p95 ms | (now + release) / before (p50) | ≤ 2× |',
          '|---|---:|---:|---:|---:|---|',
          ...s.kpis.map((k) => {
            const r = s.refresh!.get(k.id);
            if (!r) return `| ${k.id} | n/a | n/a | n/a | | |`;
            const x = (pct(r.now, 0.5)! + pct(r.release, 0.5)!) / pct(r.before, 0.5)!;
            return `| ${k.id} | ${ms(pct(r.now, 0.5))} / ${ms(pct(r.now, 0.95))} | ${ms(pct(r.release, 0.5))} / ${ms(pct(r.release, 0.95))} | ${ms(pct(r.before, 0.5))} / ${ms(pct(r.before, 0.95))} | ${ratio(x)} | ${x <= 2 ? 'met' : 'MISSED'} |`;
          }),
          '',
          `The series read while that batch is not rolled up yet (the same request as above, in-process, ${REFRESH_REPEAT} runs after 1 warm-up): the rollup's cells with the periods the day can move (a cell holding it, or sharing a day with one) aggregated from the points, against the whole request over the points, which is how the room read a KPI whose rollup was behind before (the "compiled SQL over the points" row). Its cells are checked against the points' rows.`,
          '',
          '| KPI | rollup patched with the moved periods, p50 / p95 ms | whole request over the points, p50 ms | patched / points (p50) |',
          '|---|---:|---:|---:|',
          ...s.kpis.map((k) => {
            const r = s.refresh!.get(k.id);
            const full = pct(s.direct.get(k.id)?.times ?? [], 0.5);
            if (!r || full === undefined) return `| ${k.id} | n/a | n/a | |`;
            return `| ${k.id} | ${ms(pct(r.patched, 0.5))} / ${ms(pct(r.patched, 0.95))} | ${ms(full)} | ${(pct(r.patched, 0.5)! / full).toFixed(3)}× |`;
          }),
          '',
        ]
      : []),
  ];
  const cacheHint =
    cold.p95 !== undefined && d.p95 !== undefined && cold.p95 < 0.5 * d.p95
      ? [
          '- HTTP cold is faster than the in-process rollup read: the server probably ignored PARITY_QUERY_CACHE=off and served from its cache.',
        ]
      : [];
  const notes = [...errs.map((e) => `- error: ${e}`), ...s.problems.map((p) => `- mismatch: ${p}`), ...cacheHint];
  const pgCheck = s.pg
    ? '; PostgreSQL gives the same periods, partners, n and values (to 1e-9)'
    : ' (PostgreSQL not run at this size)';
  lines.push(
    notes.length
      ? `Checks: ${notes.length} problem(s)\n${notes.join('\n')}`
      : `Checks: every HTTP cell matches the in-process row (period, partner, value to 12 digits, n; cold and warm bodies have the same digest)${pgCheck}.`,
    '',
    `summary: ${fmt(s.n)} points, HTTP cold p95 ${ms(medianOf(roundCold))} ms (median of ${ROUNDS} rounds; target ≤ ${targetMs} ms: ${target({ p95: medianOf(roundCold) }, true)}), ${medianOf(roundRatio) === undefined ? 'n/a' : ratio(medianOf(roundRatio)!)} the in-process rollup read (median over the rounds; target ≤ 1.3×)${pgs.p95 !== undefined ? `, pooled cold p95 ${speedup(cold, false)} faster than PostgreSQL` : ''}`,
  );
  return lines.join('\n') + '\n';
}

async function countPoints(file: string): Promise<Map<string, number>> {
  const db = await DuckDBInstance.create(file);
  const c = await db.connect();
  try {
    const r = await c.runAndReadAll('SELECT kpi, count(*)::BIGINT AS n FROM points GROUP BY kpi');
    return new Map(r.getRowObjectsJson().map((row) => [String(row['kpi']), Number(row['n'])]));
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

// ---------------------------------------------------------------------------------------------

async function benchSize(n: number, agreement: Agreement, kpis: Kpi[], pgUp: boolean): Promise<SizeReport> {
  log(`=== ${fmt(n)} points ===`);
  const dataDir = tempDir('parity-bench-query-');
  try {
    const room = await openRoom(
      loadConfig({ PARITY_DATA_DIR: dataDir, PARITY_AGREEMENT: demoAgreementFile(), DATABASE_URL: '' }),
    );
    let token: string;
    let operator: string;
    try {
      token = (await createToken(room.control.db, { partnerId: 'acme', role: 'steering', name: 'bench' }, new Date()))
        .token;
      operator = (await createToken(room.control.db, { partnerId: null, role: 'operator', name: 'bench' }, new Date()))
        .token;
    } finally {
      await room.close();
    }
    const file = join(dataDir, 'points.duckdb');
    log(`loading ${fmt(n)} points into ${file}…`);
    const loadSeconds = await seedPoints(file, n, FROM);
    log(`loaded in ${loadSeconds.toFixed(1)} s (${fmt(statSync(file).size / 1e6)} MB on disk)`);
    const pointCounts = await countPoints(file);

    const withPg = pgUp && n <= PG_MAX;
    const pgNote = !pgUp
      ? `n/a (no PostgreSQL at ${new URL(PG_URL).host})`
      : n > PG_MAX
        ? `skipped (${fmt(n)} > BENCH_QUERY_PG_MAX ${fmt(PG_MAX)})`
        : '';
    const csvDir = withPg ? tempDir('parity-bench-query-csv-') : undefined;
    const csvFile = csvDir ? join(csvDir, 'points.csv') : undefined;

    log('direct DuckDB (in-process, compiled SQL)…');
    const direct = await measureDirect(file, agreement, kpis, csvFile);
    const problems: string[] = [];

    const coldCells = new Map<string, number>();
    let rollupSeconds: number | undefined;
    let rollupRead: PathResult | undefined;
    let refresh: Map<string, RefreshTimes> | undefined;
    let cold: PathResult | undefined;
    let warm: PathResult | undefined;
    const rounds: SizeReport['rounds'] = [];
    const modes = [...Array.from({ length: ROUNDS }, () => 'off' as const), 'default' as const];
    for (const [i, mode] of modes.entries()) {
      const round = mode === 'off' ? ` (round ${i + 1} of ${ROUNDS})` : '';
      log(
        `HTTP, ${mode === 'off' ? 'cold (PARITY_QUERY_CACHE=off)' : 'warm (cache on)'}${round}: starting the server…`,
      );
      const server = await startServer(dataDir, mode);
      let coldRound: PathResult | undefined;
      try {
        if (i === 0) {
          log('  waiting for the server to build its rollups…');
          rollupSeconds = await rolledUp(server.url, operator);
          log(`  rollups built in ${rollupSeconds.toFixed(1)} s`);
        } else await rolledUp(server.url, operator);
        const label = mode === 'off' ? 'HTTP cold' : 'HTTP warm';
        const m = await measureHttp(server.url, token, kpis, label);
        for (const k of kpis) {
          checkHttp(label, k, direct.rows.get(k.id), m.bodies.get(k.id), disclosureRules(agreement, k), problems);
          if (mode === 'off') coldCells.set(k.id, m.bodies.get(k.id)?.cells.length ?? 0);
        }
        if (mode === 'off') coldRound = m.result;
        else warm = m.result;
      } finally {
        await stopChild(server.child);
      }
      if (coldRound) {
        log(`rollup read in-process (the SQL the server runs)${round}…`);
        const readRound = await measureRollupRead(file, agreement, kpis);
        rounds.push({ cold: pooled(coldRound).p95, read: pooled(readRound).p95 });
        cold = merged(cold, coldRound);
        rollupRead = merged(rollupRead, readRound);
      }
      if (i === 0) {
        log(`per-batch rollup refresh (one day, ${TOUCHED}), now and before disclosure control…`);
        refresh = await measureRefresh(file, agreement, kpis, direct.rows, problems);
      }
    }

    let pgOut: PgOutcome | undefined;
    if (csvFile && csvDir) {
      log('PostgreSQL baseline…');
      try {
        pgOut = await measurePostgres(csvFile, agreement, kpis);
        for (const k of kpis) checkPostgres(k, direct.rows.get(k.id), pgOut.rows.get(k.id), problems);
      } finally {
        removeTemp(csvDir);
      }
    }
    return {
      n,
      loadSeconds,
      pointCounts,
      kpis,
      direct: direct.result,
      directRows: direct.rows,
      ...(rollupRead ? { rollupRead } : {}),
      ...(refresh ? { refresh } : {}),
      ...(rollupSeconds !== undefined ? { rollupSeconds } : {}),
      ...(cold ? { cold } : {}),
      rounds,
      coldCells,
      ...(warm ? { warm } : {}),
      ...(pgOut ? { pg: pgOut } : {}),
      pgNote,
      problems,
    };
  } finally {
    removeTemp(dataDir);
  }
}

async function main() {
  const parsed = loadAgreementFile(demoAgreementFile());
  if (!parsed.ok) throw new Error(`the demo agreement is invalid: ${parsed.problems.map((p) => p.message).join('; ')}`);
  const agreement = parsed.agreement;
  const kpis = SEEDED_KPIS.map((id) => {
    const k = agreement.kpis.find((x) => x.id === id);
    if (!k) throw new Error(`the demo agreement has no KPI ${id}`);
    return k;
  });
  const pgUp = await answers(PG_URL);
  log(
    `sizes ${SIZES.map(fmt).join(', ')}; ${REPEAT} runs per KPI; PostgreSQL ${pgUp ? `at ${new URL(PG_URL).host} up to ${fmt(PG_MAX)} points, ${PG_REPEAT} runs` : 'not reachable: skipped'}`,
  );
  let failed = false;
  for (const n of SIZES) {
    const r = await benchSize(n, agreement, kpis, pgUp);
    const text = report(r);
    process.stdout.write(text + '\n');
    if (r.problems.length || text.includes('- error:')) failed = true;
  }
  if (failed) process.exitCode = 1;
}

try {
  await main();
} finally {
  await cleanup();
}
