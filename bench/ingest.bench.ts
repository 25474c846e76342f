/**
 * npm run bench:ingest — points/s through the listening server against the ceiling of issue #17,
 * measured in the same round: the in-process DuckDB appender on the same rows with each subject's
 * HMAC-SHA-256 pseudonym computed as the room does. Paths: one big push of all BENCH_POINTS
 * points as NDJSON, JSON, Arrow IPC and CSV (the issue's "one big push"); NDJSON in
 * BENCH_BATCH-point batches one after another (what a batch costs beyond its points); and NDJSON
 * in BENCH_SMALL_BATCH-point batches from 1, 2 and 4 concurrent clients, each batch spread
 * evenly over the two years (every batch touches every day), and from 4 clients with the points
 * in the order they happened (each batch a week or so, as a feed sends). BENCH_ROUNDS (≥ 3)
 * interleaved rounds, each on a fresh server with the paths in a rotated order, give min /
 * median / max of each ratio; BENCH_PATHS (path names separated by semicolons: NDJSON, JSON,
 * Arrow IPC, CSV, "NDJSON, 100,000-point batches", "NDJSON, 10,000-point batches, 2 clients" …,
 * the table's names without "HTTP" and the push size) runs only those; an unknown name is refused.
 * PostgreSQL COPY into a plain table is the what-a-team-would-do baseline. Then the peak RSS of
 * the server during one streamed NDJSON push of BENCH_RSS_POINTS and the work it starts, with the
 * default limits, and under PARITY_MEMORY_LIMIT=400MB started by `node bin/parity.js` and by
 * `bin/parity`, which adds the process settings README "Configuration" gives for a tight budget
 * (BENCH_RSS_ONLY, a part of a configuration's name such as `bin/parity (`, runs only the
 * configurations it names), and the overload of issue #13. Each path starts on a settled
 * room (no batch landing, rollups current) and is also timed until its points are rolled up.
 * BENCH_PRELOAD seeds each round's room with that many points before its paths run (a room of
 * years, not a fresh one; the peak-RSS and overload runs stay on fresh rooms).
 * BENCH_SERVER_NODE_ARGS (space-separated) are passed to node when it starts a server, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the room under the benchmark's load.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DATE,
  DOUBLE,
  DuckDBDataChunk,
  DuckDBDateValue,
  DuckDBInstance,
  DuckDBTimestampTZValue,
  TIMESTAMPTZ,
  UINTEGER,
  VARCHAR,
  type DuckDBValue,
} from '@duckdb/node-api';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { createToken } from '../services/governance/token-repository.js';
import { createPseudonymiser } from '../services/ingest/pseudonymiser.js';
import { loadConfig } from '../services/platform/config.js';
import { demoAgreementFile, packageRoot } from '../services/platform/paths.js';
import { openRoom } from '../assembly/open-room.js';
import { createScratchDatabase } from '../tests/helpers/scratch-db.js';
import { freePort } from '../tests/helpers/spawn-room.js';
import { median, spread } from './rounds.js';
import { seedPoints } from './seed.js';

const N = Number(process.env['BENCH_POINTS'] ?? 1_000_000);
const BATCH = Number(process.env['BENCH_BATCH'] ?? 100_000);
const RSS_POINTS = Number(process.env['BENCH_RSS_POINTS'] ?? 10_000_000);
const RSS_ONLY = process.env['BENCH_RSS_ONLY'];
/** Interleaved rounds of the ceiling and every path (≥ 3). */
const ROUNDS = Math.max(3, Number(process.env['BENCH_ROUNDS'] ?? 3));
/** The points of one small batch. */
const SMALL = Number(process.env['BENCH_SMALL_BATCH'] ?? 10_000);
/**
 * Points each round's room holds before its paths run (bench/seed.ts: two years of the five KPIs,
 * ending where the paths' points end), so a path lands into a room of that size and its rollup
 * catch-ups recompute periods holding those points too. 0: a fresh room.
 */
const PRELOAD = Number(process.env['BENCH_PRELOAD'] ?? 0);
if (!Number.isSafeInteger(PRELOAD) || PRELOAD < 0)
  throw new Error(`BENCH_PRELOAD: ${process.env['BENCH_PRELOAD']} is not a point count`);
/** The last instant of the paths' points (makeRows): they reach 699 days back from it. */
const ROWS_BASE = Date.parse('2026-11-01T00:00:00Z');
/** The seeded points' first day: the 730 seeded days end where the paths' points do. */
const PRELOAD_FROM = new Date(ROWS_BASE - 730 * 86_400_000).toISOString().slice(0, 10);
/** Only the paths of these names (all when unset). */
const ONLY = process.env['BENCH_PATHS']?.split(';').map((p) => p.trim().toLowerCase());
const PG_URL = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Concurrent uploads of the overload row, each of this many bytes (issue #13: 40 × 4 MB). */
const OVERLOAD = Number(process.env['BENCH_OVERLOAD_UPLOADS'] ?? 40);
const OVERLOAD_BYTES = Number(process.env['BENCH_OVERLOAD_BYTES'] ?? 4 * 1024 * 1024);

interface Row {
  kpi: string;
  at: string;
  value: number;
  subject: string;
  dims?: { region: string };
}

function makeRows(n: number, offset = 0): Row[] {
  const rows: Row[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const k = i + offset;
    const rate = k % 2 === 1;
    rows[i] = {
      kpi: rate ? 'error_rate' : 'lead_time',
      at: new Date(ROWS_BASE - (k % 700) * 86_400_000 - (k % 36_000) * 1000).toISOString(),
      value: rate ? (k % 31 === 0 ? 1 : 0) : 10 + (k % 900) / 10,
      subject: `ORD-${k.toString().padStart(9, '0')}`,
      dims: { region: k % 5 < 3 ? 'north' : 'south' },
    };
  }
  return rows;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en');

/**
 * The ceiling of issue #17: the DuckDB appender on the same rows, each subject replaced by its
 * keyed HMAC-SHA-256 pseudonym by the room's own pseudonymiser (`hmac`), or the appender alone.
 */
async function appenderCeiling(rows: Row[], hmac = false): Promise<number> {
  const pseudonym = createPseudonymiser(Buffer.alloc(32, 7));
  const dir = mkdtempSync(join(tmpdir(), 'parity-bench-ceiling-'));
  const db = await DuckDBInstance.create(join(dir, 'c.duckdb'));
  const c = await db.connect();
  await c.run(readFileSync(join(packageRoot(), 'sql/duckdb/schema.sql'), 'utf8'));
  const types = [UINTEGER, VARCHAR, VARCHAR, TIMESTAMPTZ, DOUBLE, VARCHAR, VARCHAR, DATE];
  const t0 = performance.now();
  await c.run('BEGIN TRANSACTION');
  const ap = await c.createAppender('points');
  for (let off = 0; off < rows.length; off += 2048) {
    const n = Math.min(2048, rows.length - off);
    const cols: DuckDBValue[][] = types.map(() => new Array(n));
    for (let j = 0; j < n; j++) {
      const r = rows[off + j]!;
      cols[0]![j] = 1;
      cols[1]![j] = 'acme';
      cols[2]![j] = r.kpi;
      cols[3]![j] = new DuckDBTimestampTZValue(BigInt(Date.parse(r.at)) * 1000n);
      cols[4]![j] = r.value;
      cols[5]![j] = hmac ? pseudonym('acme', r.subject) : r.subject;
      cols[6]![j] = r.dims ? JSON.stringify(r.dims) : null;
      // The UTC day stands in for the local day: the ceiling does no time-zone work.
      cols[7]![j] = new DuckDBDateValue(Math.floor(Date.parse(r.at) / 86_400_000));
    }
    const chunk = DuckDBDataChunk.create(types, n);
    chunk.setColumns(cols);
    ap.appendDataChunk(chunk);
  }
  ap.closeSync();
  await c.run('COMMIT');
  const s = (performance.now() - t0) / 1000;
  c.closeSync();
  db.closeSync();
  rmSync(dir, { recursive: true, force: true });
  return rows.length / s;
}

async function postgresCopy(rows: Row[]): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: PG_URL });
  try {
    await client.connect();
  } catch {
    return undefined;
  }
  await client.query(
    'DROP TABLE IF EXISTS parity_bench_points; CREATE TABLE parity_bench_points (partner text, kpi text, ts timestamptz, value double precision, subject text, dims jsonb)',
  );
  const t0 = performance.now();
  const stream = client.query(copyFrom('COPY parity_bench_points FROM STDIN (FORMAT csv)'));
  async function* lines() {
    let buf = '';
    for (const r of rows) {
      buf += `acme,${r.kpi},${r.at},${r.value},${r.subject},"${r.dims ? JSON.stringify(r.dims).replaceAll('"', '""') : ''}"\n`;
      if (buf.length > 1 << 20) {
        yield buf;
        buf = '';
      }
    }
    if (buf) yield buf;
  }
  await pipeline(Readable.from(lines()), stream);
  const s = (performance.now() - t0) / 1000;
  await client.query('DROP TABLE parity_bench_points');
  await client.end();
  return rows.length / s;
}

async function scratchDatabase(): Promise<{ url: string; drop: () => Promise<void> } | undefined> {
  return createScratchDatabase(PG_URL, 'parity_bench').catch(() => undefined);
}

/**
 * A fresh room with an ingest token per partner, served by its own process, its control plane on
 * a scratch PostgreSQL database when one answers (the production shape: embedded PGlite alone
 * takes 350–800 MB of the process, see the README); close() stops it and removes both.
 */
async function scratchServer(
  prefix: string,
  partners: string[],
  env: Record<string, string | undefined>,
  how: StartedBy = 'node',
) {
  const db = await scratchDatabase();
  const { dir, tokens } = await freshRoom(prefix, db, partners);
  const server = await startServer(dir, { DATABASE_URL: db?.url ?? '', ...env }, how);
  return {
    ...server,
    tokens,
    pglite: !db,
    close: async () => {
      server.child.kill('SIGTERM');
      await new Promise((r) => server.child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
      await db?.drop();
    },
  };
}

/** The kernel's clock ticks a second, the unit of /proc's CPU times. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * How a server is started: `node bin/parity.js serve` (with BENCH_SERVER_NODE_ARGS), or the
 * package's `bin/parity serve`, which adds the process settings a tight budget wants.
 */
type StartedBy = 'node' | 'launcher';

/** `extraEnv` adds to the caller's environment; a key given as undefined is taken out of it. */
async function startServer(
  dataDir: string,
  extraEnv: Record<string, string | undefined> = {},
  how: StartedBy = 'node',
) {
  const port = await freePort();
  const env: Record<string, string | undefined> = {
    ...process.env,
    DATABASE_URL: '',
    PARITY_DATA_DIR: dataDir,
    PARITY_AGREEMENT: demoAgreementFile(),
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const nodeArgs = process.env['BENCH_SERVER_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
  const [file, args] =
    how === 'node'
      ? [process.execPath, [...nodeArgs, join(packageRoot(), 'bin/parity.js'), 'serve']]
      : [join(packageRoot(), 'bin/parity'), ['serve']];
  const child = spawn(file, args, {
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const operator = operatorTokens.get(dataDir);
  if (operator) operatorTokens.set(url, operator);
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    child,
    url,
    peakRssMb: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024,
    /** User and system CPU seconds of the server process so far, all threads (/proc stat, fields 14 and 15). */
    cpuSeconds: () => {
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    },
  };
}

/**
 * Waits until no batch is landing and the server's rollups hold every landed batch — and, with
 * `evaluation`, no band evaluation is queued or running (a push's evaluation may outlast its rollups).
 */
async function settled(url: string, opts: { evaluation?: boolean } = {}): Promise<void> {
  const deadline = Date.now() + 3_600_000;
  while (Date.now() < deadline) {
    const m = await metricsOf(url);
    // With PARITY_ROLLUPS=off or PARITY_ALERTS=off the metric is absent: nothing to wait for there.
    const rolled = !/^parity_rollup_current /m.test(m) || /^parity_rollup_current 1$/m.test(m);
    const evaluated = !opts.evaluation || !/^parity_alert_evaluation_busy 1$/m.test(m);
    if (rolled && evaluated && /^parity_ingest_writers_busy 0$/m.test(m)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the room did not settle within an hour');
}

/** The server's release-step counters (/metrics): steps committed and their seconds. */
async function releaseMetrics(url: string): Promise<{ steps: number; seconds: number }> {
  const m = await metricsOf(url);
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(m)?.[1] ?? NaN);
  return { steps: read('parity_release_steps_total'), seconds: read('parity_release_seconds_total') };
}

/** Median steps and median milliseconds a step over a path's rounds. */
function releaseCell(runs: { steps: number; seconds: number }[]): string {
  const steps = median(runs.map((r) => r.steps));
  const each = median(runs.map((r) => (r.steps ? (r.seconds * 1000) / r.steps : 0)));
  return `${fmt(steps)}, ${each.toFixed(0)}`;
}

async function pushAll(url: string, token: string, type: string, bodies: (string | Uint8Array)[]): Promise<number> {
  const t0 = performance.now();
  let accepted = 0;
  for (const body of bodies) {
    const res = await fetch(`${url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': type },
      body: body as BodyInit,
    });
    const r = (await res.json()) as { accepted?: number; detail?: string };
    if (res.status !== 202) throw new Error(`${type}: ${res.status} ${r.detail}`);
    accepted += r.accepted!;
  }
  const s = (performance.now() - t0) / 1000;
  if (accepted !== N) throw new Error(`${type}: ${accepted} accepted of ${N}`);
  return N / s;
}

/**
 * A data directory with the demo agreement and an ingest token per partner, its control plane
 * embedded or, with `db`, on that PostgreSQL database.
 */
async function freshRoom(
  prefix = 'parity-bench-',
  db?: { url: string },
  partners = ['acme'],
): Promise<{ dir: string; tokens: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const room = await openRoom(
    loadConfig({ PARITY_DATA_DIR: dir, PARITY_AGREEMENT: demoAgreementFile(), DATABASE_URL: db?.url ?? '' }),
  );
  const tokens: string[] = [];
  for (const partnerId of partners)
    tokens.push((await createToken(room.control.db, { partnerId, role: 'ingest', name: 'bench' }, new Date())).token);
  operatorTokens.set(
    dir,
    (await createToken(room.control.db, { partnerId: null, role: 'operator', name: 'bench' }, new Date())).token,
  );
  await room.close();
  return { dir, tokens };
}

/** Each bench room's operator token by data directory, then by its server's URL: /metrics is the operator's. */
const operatorTokens = new Map<string, string>();

/** A server's /metrics text, read with its room's operator token. */
async function metricsOf(url: string): Promise<string> {
  const token = operatorTokens.get(url);
  if (!token) throw new Error(`no operator token for ${url}`);
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** Points/s of `bodies` sent by `clients` concurrent clients, each taking the next body in turn. */
async function pushConcurrently(url: string, token: string, bodies: string[], clients: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  let accepted = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        const res = await fetch(`${url}/v1/points`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
          body,
        });
        const r = (await res.json()) as { accepted?: number; detail?: string };
        if (res.status !== 202) throw new Error(`small batches: ${res.status} ${r.detail}`);
        accepted += r.accepted!;
      }
    }),
  );
  if (accepted !== N) throw new Error(`small batches: ${accepted} accepted of ${N}`);
  return N / ((performance.now() - t0) / 1000);
}

async function main() {
  process.stderr.write(`generating ${fmt(N)} points…\n`);
  const rows = makeRows(N);
  const ndjsonOf = (c: Row[]) => c.map((r) => JSON.stringify(r)).join('\n') + '\n';
  // One big push per format: every point in one request.
  const ndjsonBodies = [ndjsonOf(rows)];
  const jsonBodies = [JSON.stringify({ points: rows })];
  const arrowBodies = [
    tableToIPC(
      tableFromArrays({
        kpi: rows.map((r) => r.kpi),
        at: rows.map((r) => r.at),
        value: Float64Array.from(rows, (r) => r.value),
        subject: rows.map((r) => r.subject),
        region: rows.map((r) => r.dims?.region ?? null),
      } as Parameters<typeof tableFromArrays>[0]),
      'stream',
    ),
  ];
  const csvBodies = [
    'kpi,at,value,subject,region\n' +
      rows.map((r) => `${r.kpi},${r.at},${r.value},${r.subject},${r.dims?.region ?? ''}`).join('\n') +
      '\n',
  ];
  // The same points in NDJSON bodies of `size` points each.
  const ndjsonBatches = (size: number, of = rows) => {
    const out: string[] = [];
    for (let i = 0; i < N; i += size) out.push(ndjsonOf(of.slice(i, i + size)));
    return out;
  };
  const batchBodies = ndjsonBatches(BATCH);
  // Small batches, sent by 1, 2 or 4 clients at once. Each is spread evenly over the two years
  // (consecutive rows cycle through 700 days): every batch touches every day of both KPIs.
  const smallBodies = ndjsonBatches(SMALL);
  // The same points in the order they happened, as a feed sends them: each batch a week or so.
  const inTimeOrder = [...rows].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  const orderedBodies = ndjsonBatches(SMALL, inTimeOrder);
  process.stderr.write('baseline: PostgreSQL COPY…\n');
  const copy = await postgresCopy(rows);

  type Path = { name: string; target?: number; run: (url: string, token: string) => Promise<number> };
  const allPaths: Path[] = [
    { name: 'NDJSON', target: 0.9, run: (u, t) => pushAll(u, t, 'application/x-ndjson', ndjsonBodies) },
    { name: 'JSON', target: 0.9, run: (u, t) => pushAll(u, t, 'application/json', jsonBodies) },
    {
      name: 'Arrow IPC',
      target: 0.9,
      run: (u, t) => pushAll(u, t, 'application/vnd.apache.arrow.stream', arrowBodies),
    },
    { name: 'CSV', target: 0.7, run: (u, t) => pushAll(u, t, 'text/csv', csvBodies) },
    {
      name: `NDJSON, ${fmt(BATCH)}-point batches`,
      run: (u, t) => pushAll(u, t, 'application/x-ndjson', batchBodies),
    },
    ...[1, 2, 4].map((clients) => ({
      name: `NDJSON, ${fmt(SMALL)}-point batches, ${clients} client${clients > 1 ? 's' : ''}`,
      ...(clients === 4 ? { target: 0.6 } : {}),
      run: (u: string, t: string) => pushConcurrently(u, t, smallBodies, clients),
    })),
    {
      name: `NDJSON, ${fmt(SMALL)}-point batches in time order, 4 clients`,
      run: (u: string, t: string) => pushConcurrently(u, t, orderedBodies, 4),
    },
  ];
  const unknown = ONLY?.filter((o) => !allPaths.some((p) => p.name.toLowerCase() === o));
  if (unknown?.length)
    throw new Error(
      `BENCH_PATHS: no path named ${unknown.join(', ')} (paths: ${allPaths.map((p) => p.name).join('; ')})`,
    );
  const paths = allPaths.filter((p) => !ONLY || ONLY.includes(p.name.toLowerCase()));
  // Rounds: the ceiling (appender + HMAC) and every path, in a rotated order, on a fresh server
  // each round; ratios are taken within the round.
  const rates = new Map<string, number[]>([
    ...paths.map((p) => [p.name, []] as [string, number[]]),
    ['ceiling', []],
    ['appender', []],
  ]);
  const ratios = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  /** Points/s of each path counted until the room's rollups hold every point it pushed. */
  const rolledRates = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  /** The server's CPU time (all its threads) per point of each path, until its last 202. */
  const cpuPerPoint = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  /** The release steps each path's batches caused (until rolled up): how many, and their seconds. */
  const releaseSteps = new Map<string, { steps: number; seconds: number }[]>(paths.map((p) => [p.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    process.stderr.write(`round ${round + 1} of ${ROUNDS}: ceilings…\n`);
    const ceiling = await appenderCeiling(rows, true);
    rates.get('ceiling')!.push(ceiling);
    rates.get('appender')!.push(await appenderCeiling(rows));
    const { dir: dataDir, tokens } = await freshRoom();
    if (PRELOAD > 0) {
      process.stderr.write(`  seeding ${fmt(PRELOAD)} points…\n`);
      await seedPoints(join(dataDir, 'points.duckdb'), PRELOAD, PRELOAD_FROM);
    }
    const token = tokens[0]!;
    const server = await startServer(dataDir);
    try {
      const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
      for (const path of order) {
        // Each path starts on a settled room: the rollups of the previous path's points (a
        // refresh of every period of 700 days) would otherwise run inside this path's timing.
        await settled(server.url);
        process.stderr.write(`  ${path.name}…\n`);
        const t0 = performance.now();
        const cpu0 = server.cpuSeconds();
        const release0 = await releaseMetrics(server.url);
        const rate = await path.run(server.url, token);
        cpuPerPoint.get(path.name)!.push(((server.cpuSeconds() - cpu0) * 1e6) / N);
        // And the time until its points are rolled up too (the fast reads hold them).
        await settled(server.url);
        const release1 = await releaseMetrics(server.url);
        releaseSteps
          .get(path.name)!
          .push({ steps: release1.steps - release0.steps, seconds: release1.seconds - release0.seconds });
        rates.get(path.name)!.push(rate);
        ratios.get(path.name)!.push(rate / ceiling);
        rolledRates.get(path.name)!.push(N / ((performance.now() - t0) / 1000));
      }
    } finally {
      server.child.kill('SIGTERM');
      await new Promise((r) => server.child.once('exit', r));
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
  const ceilingMedian = median(rates.get('ceiling')!);

  // Peak RSS: a fresh server, one streamed NDJSON body of RSS_POINTS points in one request, with
  // the default limits, told to stay within 400 MB (PARITY_MEMORY_LIMIT, config.ts memoryPlan)
  // and started by `node`, and told so and started by bin/parity, which adds the process settings
  // README "Configuration" gives for a tight budget. The
  // peak is read at the push's receipt and again once the work the push starts (band evaluation,
  // the rollups' catch-up) is done: the budget holds for both or it is missed.
  const rssRuns: { name: string; peak: number; peakAfter: number; rate: number; pglite: boolean }[] = [];
  if (RSS_POINTS > 0)
    for (const [name, env, how] of [
      // An empty value is unset (config.ts): the defaults run ignores a limit exported by the caller,
      // and no run inherits process settings exported by the caller.
      ['defaults', { PARITY_MEMORY_LIMIT: '', NODE_OPTIONS: undefined, MALLOC_ARENA_MAX: undefined }, 'launcher'],
      [
        'PARITY_MEMORY_LIMIT=400MB, started by node bin/parity.js (no process settings)',
        { PARITY_MEMORY_LIMIT: '400MB', NODE_OPTIONS: undefined, MALLOC_ARENA_MAX: undefined },
        'node',
      ],
      [
        'PARITY_MEMORY_LIMIT=400MB, started by bin/parity (the process settings added)',
        { PARITY_MEMORY_LIMIT: '400MB', NODE_OPTIONS: undefined, MALLOC_ARENA_MAX: undefined },
        'launcher',
      ],
    ] as const) {
      if (RSS_ONLY && !name.includes(RSS_ONLY)) continue;
      const s2 = await scratchServer('parity-bench-rss-', ['acme'], { PARITY_MAX_BODY: '16gib', ...env }, how);
      const tok2 = s2.tokens[0]!;
      try {
        process.stderr.write(`streaming ${fmt(RSS_POINTS)} points as one NDJSON request (${name})…\n`);
        async function* body() {
          const step = 50_000;
          for (let off = 0; off < RSS_POINTS; off += step)
            yield Buffer.from(
              makeRows(Math.min(step, RSS_POINTS - off), off)
                .map((r) => JSON.stringify(r))
                .join('\n') + '\n',
            );
        }
        const t0 = performance.now();
        const res = await fetch(`${s2.url}/v1/points`, {
          method: 'POST',
          headers: { authorization: `Bearer ${tok2}`, 'content-type': 'application/x-ndjson' },
          body: Readable.toWeb(Readable.from(body())) as ReadableStream,
          duplex: 'half',
        } as RequestInit);
        const receipt = (await res.json()) as { accepted: number; detail?: string };
        if (res.status !== 202 || receipt.accepted !== RSS_POINTS)
          throw new Error(`RSS push (${name}): ${res.status} ${receipt.detail ?? receipt.accepted}`);
        const rate = RSS_POINTS / ((performance.now() - t0) / 1000);
        const peak = s2.peakRssMb();
        process.stderr.write(`waiting for the work the push started (${name})…\n`);
        await settled(s2.url, { evaluation: true });
        rssRuns.push({ name, rate, peak, peakAfter: s2.peakRssMb(), pglite: s2.pglite });
      } finally {
        await s2.close();
      }
    }
  // Overload: a fresh server (control plane on PostgreSQL when one answers), both demo partners
  // sending OVERLOAD concurrent uploads at once; the peak RSS is read from the server's VmHWM,
  // reset after start-up (/proc/<pid>/clear_refs), with the default limits and under
  // PARITY_MEMORY_LIMIT=512MB.
  const overload: { name: string; statuses: Record<string, number>; peak: number; idle: number; seconds: number }[] =
    [];
  if (OVERLOAD > 0)
    for (const [name, env] of [
      ['defaults', { PARITY_MEMORY_LIMIT: '' }],
      ['PARITY_MEMORY_LIMIT=512MB', { PARITY_MEMORY_LIMIT: '512MB' }],
    ] as const) {
      const s3 = await scratchServer('parity-bench-overload-', ['acme', 'globex'], env);
      const tokens = s3.tokens;
      try {
        writeFileSync(`/proc/${s3.child.pid}/clear_refs`, '5');
        const idle = s3.peakRssMb();
        process.stderr.write(`overload (${name}): ${OVERLOAD} concurrent uploads of ${fmt(OVERLOAD_BYTES)} bytes…\n`);
        const bodies = Array.from({ length: OVERLOAD }, (_, i) => {
          const out: string[] = [];
          let size = 0;
          for (let j = 0; size < OVERLOAD_BYTES; j++) {
            const line = JSON.stringify(makeRows(1, i * 1_000_000 + j)[0]);
            out.push(line);
            size += line.length + 1;
          }
          return out.join('\n') + '\n';
        });
        const t0 = performance.now();
        const statuses: Record<string, number> = {};
        await Promise.all(
          bodies.map(async (body, i) => {
            let status: string;
            try {
              const res = await fetch(`${s3.url}/v1/points`, {
                method: 'POST',
                headers: { authorization: `Bearer ${tokens[i % 2]}`, 'content-type': 'application/x-ndjson' },
                body,
              });
              await res.arrayBuffer();
              status = String(res.status);
            } catch {
              status = 'closed'; // answered 429 before the body was sent, and the socket closed
            }
            statuses[status] = (statuses[status] ?? 0) + 1;
          }),
        );
        overload.push({ name, statuses, peak: s3.peakRssMb(), idle, seconds: (performance.now() - t0) / 1000 });
      } finally {
        await s3.close();
      }
    }

  const lines = [
    `Ingest benchmark: ${fmt(N)} points per path, ${ROUNDS} interleaved rounds (a fresh server each, paths in rotated order${PRELOAD > 0 ? `, its room seeded with ${fmt(PRELOAD)} points first` : ''}), ${process.platform} ${process.arch}, ${(await import('node:os')).cpus().length} cores, node ${process.version}`,
    '',
    'Each path starts once the room has settled (no batch landing, rollups current); "until rolled up" counts until the rollups hold every point the path pushed.',
    '',
    '| path | points/s (median) | vs appender + HMAC ceiling (min / median / max) | target | points/s until rolled up (median) | server CPU µs a point (median) | release steps: count, ms each (median) |',
    '|---|---:|---|---|---:|---:|---:|',
    `| DuckDB appender + HMAC-SHA-256 per row, in-process (ceiling) | ${fmt(ceilingMedian)} | 1.00 | | | | |`,
    `| DuckDB appender alone, in-process | ${fmt(median(rates.get('appender')!))} | ${(median(rates.get('appender')!) / ceilingMedian).toFixed(2)} | | | | |`,
    `| PostgreSQL COPY, plain table (baseline) | ${copy ? fmt(copy) : 'n/a (no server)'} | ${copy ? (copy / ceilingMedian).toFixed(2) : 'n/a'} | | | | |`,
    ...paths.map((p) => {
      const r = ratios.get(p.name)!;
      const target =
        p.target === undefined ? '' : `≥ ${p.target.toFixed(1)}×: ${median(r) >= p.target ? 'met' : 'MISSED'}`;
      return `| HTTP ${p.name}${p.name.includes('batches') ? '' : `, one push of ${fmt(N)} points`} → Parity | ${fmt(median(rates.get(p.name)!))} | ${spread(r, (x) => x.toFixed(2), ' / ')} | ${target} | ${fmt(median(rolledRates.get(p.name)!))} | ${median(cpuPerPoint.get(p.name)!).toFixed(1)} | ${releaseCell(releaseSteps.get(p.name)!)} |`;
    }),
    ...rssRuns.map(
      (r) =>
        `| HTTP NDJSON, ${fmt(RSS_POINTS)} points in one streamed request, ${r.name} | ${fmt(r.rate)} | ${(r.rate / ceilingMedian).toFixed(2)} (one run) | peak server RSS ${r.peak.toFixed(0)} MB at the receipt, ${r.peakAfter.toFixed(0)} MB once its rollups and evaluation are done${r.pglite ? ' with embedded PGlite' : ''} (≤ 400 MB: ${r.peakAfter <= 400 ? 'met' : 'MISSED'}) | | | |`,
    ),
  ];
  if (overload.length)
    lines.push(
      '',
      `Overload: ${OVERLOAD} concurrent NDJSON uploads of ${fmt(OVERLOAD_BYTES)} bytes from both demo partners at once, control plane on PostgreSQL; peak server RSS after start-up (VmHWM reset once the server answered).`,
      '',
      '| configuration | answers | seconds | RSS at rest MB | peak RSS MB | ≤ 512 MB |',
      '|---|---|---:|---:|---:|---|',
      ...overload.map(
        (o) =>
          `| ${o.name} | ${Object.entries(o.statuses)
            .sort()
            .map(([k, v]) => `${v} × ${k}`)
            .join(
              ', ',
            )} | ${o.seconds.toFixed(1)} | ${o.idle.toFixed(0)} | ${o.peak.toFixed(0)} | ${o.peak <= 512 ? 'met' : 'MISSED'} |`,
      ),
    );
  const summary = paths.map((p) => `${p.name} ${median(ratios.get(p.name)!).toFixed(2)}×`).join(', ');
  lines.push(
    '',
    `summary: against the appender + HMAC ceiling (median of ${ROUNDS} rounds): ${summary}${rssRuns.map((r) => `; ${fmt(RSS_POINTS)}-point push peak RSS ${r.peak.toFixed(0)} / ${r.peakAfter.toFixed(0)} MB at the receipt / once settled (${r.name})`).join('')}`,
  );
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
