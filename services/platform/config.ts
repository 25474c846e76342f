import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';

/** Bytes per unit of a size: KB, MB, GB in powers of 1000 and KiB, MiB, GiB of 1024, as DuckDB reads them too. */
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** A size checked by the schemas below (`1048576`, `64mb`, `2 GiB`) in bytes. */
function sizeBytes(size: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(size.trim());
  const mult = m && SIZE_UNITS[m[2]!.toLowerCase()];
  if (!mult) throw new RangeError(`not a size: ${size}`);
  return Math.floor(Number(m[1]) * mult);
}

/** What PARITY_DUCKDB_MEMORY takes: DuckDB's own memory sizes. */
const DUCKDB_SIZE = /^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$/i;

/** What the byte-size variables take: a number and, optionally, a unit of SIZE_UNITS. */
const BYTE_SIZE = new RegExp(`^\\d+(\\.\\d+)?\\s*(${Object.keys(SIZE_UNITS).filter(Boolean).join('|')})?$`, 'i');

const byteSize = z.string().regex(BYTE_SIZE, 'expected a size such as 1048576, 64mb or 1gib').transform(sizeBytes);

/** The environment the room reads, validated once at start-up (DESIGN.md "Environment"). */
/**
 * A comma-separated list setting (unset or empty: none), each item trimmed and checked by `problem`
 * (the words after the item, or undefined when it is fine): one issue per bad item.
 */
function commaList(problem: (item: string) => string | undefined) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const items = (v ?? '')
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
      for (const item of items) {
        const words = problem(item);
        if (words) ctx.addIssue({ code: 'custom', message: `${item.slice(0, 80)} ${words}` });
      }
      return items;
    });
}

export const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  PARITY_DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
    .optional(),
  PARITY_AGREEMENT: z.string().min(1).optional(),
  PARITY_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  SMTP_URL: z
    .string()
    .regex(/^smtps?:\/\//, 'expected an smtp:// or smtps:// URL')
    .optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PARITY_MAX_BODY: byteSize.default(1024 ** 3),
  PARITY_INGEST_SPOOL: byteSize.optional(),
  PARITY_MAX_JSON_BODY: byteSize.default(256 * 1024 ** 2),
  // Default 4, or what PARITY_MEMORY_LIMIT leaves room for (memoryPlan).
  PARITY_INGEST_CONCURRENCY: z.coerce.number().int().positive().optional(),
  PARITY_MEMORY_LIMIT: byteSize
    // 256MB as written (sizes read MB as 10^6 bytes, MiB as 2^20): the plan below counts in MiB.
    .refine((n) => n >= 256e6, 'expected at least 256MB: DuckDB, the ingest workers and Node need that much')
    .optional(),
  PARITY_INGEST_QUEUE: z.coerce.number().int().min(0).default(16),
  PARITY_INGEST_MIN_RATE: byteSize.default(64 * 1024),
  PARITY_SESSION_IDLE_MINUTES: z.coerce.number().int().min(1).max(10_080).default(120),
  PARITY_SESSION_MAX_HOURS: z.coerce.number().int().min(1).max(720).default(12),
  PARITY_INGEST_RATE_WINDOW_SECONDS: z.coerce.number().min(1).max(600).default(10),
  PARITY_INGEST_MAX_SECONDS: z.coerce.number().int().min(1).max(86_400).default(900),
  PARITY_BODY_SECONDS: z.coerce.number().int().min(1).max(3_600).default(30),
  PARITY_MAX_CONNECTIONS: z.coerce.number().int().min(16).max(1_000_000).default(8192),
  PARITY_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(1).max(1_000_000).default(256),
  PARITY_CLOCK_SKEW_SECONDS: z.coerce.number().int().min(0).default(300),
  PARITY_QUERY_CACHE: z.enum(['on', 'off']).default('on'),
  PARITY_POINT_READS: z.coerce.number().int().min(1).max(64).optional(),
  PARITY_DUCKDB_THREADS: z.coerce.number().int().min(1).max(1024).optional(),
  PARITY_POINT_READS_WAITING: z.coerce.number().int().min(1).max(10_000).default(32),
  PARITY_ALERTS: z.enum(['on', 'off']).default('on'),
  PARITY_REVIEW_SEND: z.enum(['on', 'off']).default('on'),
  PARITY_ROLLUPS: z.enum(['on', 'off']).default('on'),
  PARITY_EVALUATE_EVERY_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  PARITY_RETENTION_EVERY_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(3600),
  PARITY_MAIL_FROM: z.string().min(3).default('Parity clean room <parity@localhost>'),
  PARITY_PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional(),
  PARITY_OIDC_FILE: z.string().min(1).optional(),
  PARITY_EMBED_ORIGINS: commaList((o) => {
    let u: URL | undefined;
    try {
      u = new URL(o);
    } catch {
      u = undefined;
    }
    return !u || !/^https?:$/.test(u.protocol) || u.origin !== o.replace(/\/$/, '')
      ? 'is not an origin such as https://intranet.example.com'
      : undefined;
  }).transform((origins) => origins.map((o) => o.replace(/\/$/, ''))),
  PARITY_DUCKDB_MEMORY: z.string().regex(DUCKDB_SIZE, 'expected a DuckDB memory size such as 256MB or 2GB').optional(),
  // The proxies in front of the room, whose X-Forwarded-For names the client: addresses or CIDR
  // ranges, comma-separated (never "everyone": a client could name any address it likes).
  PARITY_TRUST_PROXY: commaList((a) => {
    const [ip, bits, extra] = a.split('/');
    const family = isIP(ip ?? '');
    const prefix = bits === undefined ? 0 : /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
    return family === 0 || extra !== undefined || prefix < 0 || prefix > (family === 4 ? 32 : 128)
      ? 'is not an address or CIDR range such as 10.0.0.0/8'
      : undefined;
  }),
});

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  agreementFile: string | undefined;
  secret: string | undefined;
  smtpUrl: string | undefined;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  maxBody: number;
  /** Bytes of one partner's bodies the room keeps on disk at once (default twice PARITY_MAX_BODY). */
  spoolPerPartner: number;
  maxJsonBody: number;
  ingestConcurrency: number;
  /** PARITY_MEMORY_LIMIT in bytes, or null: what DuckDB, the ingest workers and their count were sized from. */
  memoryLimit: number | null;
  /**
   * Heap limits of each ingest worker thread (a batch in flight has a parse and a spool worker),
   * and the batch size after which a pair ends rather than wait for the next batch (null: never).
   */
  workerHeap: WorkerHeap;
  ingestQueue: number;
  /** Dashboard sessions: idle and absolute lifetimes. */
  sessions: { idleMs: number; absoluteMs: number };
  /** How fast an upload must arrive, and for how long it may take (services/ingest/body-pace.ts). */
  ingestPace: { minBytesPerSecond: number; windowMs: number; maxMs: number };
  /** How long a JSON body (≤ 1 MiB, buffered until it ends) may take to arrive after its headers. */
  jsonBodyMs: number;
  clockSkewMs: number;
  /** DuckDB's buffer pool; beyond it DuckDB spills to disk instead of growing the process. */
  duckdbMemory: string;
  /** DuckDB's worker threads: PARITY_DUCKDB_THREADS, or what the pool gives (duckdbThreads). */
  duckdbThreads: number;
  /** Cache aggregates by (query, last snapshot that touched the KPI). */
  queryCache: boolean;
  /**
   * The most aggregate cells the query cache keeps (CACHE_CELL_BYTES each): 128 MB of them
   * without a memory limit, an eighth of PARITY_MEMORY_LIMIT under one.
   */
  queryCacheCells: number;
  /**
   * Reads from the points (old snapshots, periods not rolled up) run at once at most; the others
   * wait, their turns shared among callers (read-gate.ts).
   */
  pointReads: number;
  /** A caller's reads from the points waiting at most; one more is a 429 (a dashboard fires a dozen). */
  pointReadsWaiting: number;
  /** Keep every agreed cell rolled up after each batch; series read the rollup where it is current. */
  rollups: boolean;
  /** Band evaluation, incidents and the notifier (off: ingest and query only). */
  alerts: boolean;
  /** Send last month's review on the first working day of a month (with the scheduled evaluation). */
  reviewSend: boolean;
  /** How often bands, feed freshness and acknowledgement deadlines are evaluated on a schedule. */
  evaluateEveryMs: number;
  /** How often points past the agreement's retention are deleted (0: never, by this process). */
  retentionEveryMs: number;
  /** The room's address as recipients reach it: links in notifications. */
  publicUrl: string | undefined;
  /** Origins whose pages may embed the components with a bearer token (CORS for GET /v1/…). */
  embedOrigins: string[];
  /** The partners' identity providers (a YAML or JSON file, services/governance/oidc.ts). */
  oidcFile: string | undefined;
  /** The proxies trusted to name the client in X-Forwarded-For (addresses, CIDR ranges); empty: none. */
  trustProxy: string[];
  /** Connections open at once at most, and from one client address (null behind a trusted proxy). */
  connections: { max: number; perAddress: number | null };
  /** The From of notification e-mails. */
  mailFrom: string;
}

/** Thrown when the environment is invalid; the message is one line naming the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads and validates the environment; empty strings count as unset. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  const parsed = envSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    // Never echo the value: it may be a secret or a URL with a password.
    throw new ConfigError(`invalid configuration: ${name}: ${issue.message}`);
  }
  const e = parsed.data;
  const plan = memoryPlan(e.PARITY_MEMORY_LIMIT ?? null, {
    duckdbMemory: e.PARITY_DUCKDB_MEMORY,
    ingestConcurrency: e.PARITY_INGEST_CONCURRENCY,
  });
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.PARITY_DATA_DIR),
    databaseUrl: e.DATABASE_URL,
    agreementFile: e.PARITY_AGREEMENT,
    secret: e.PARITY_SECRET,
    smtpUrl: e.SMTP_URL,
    logLevel: e.LOG_LEVEL,
    maxBody: e.PARITY_MAX_BODY,
    spoolPerPartner: e.PARITY_INGEST_SPOOL ?? 2 * e.PARITY_MAX_BODY,
    maxJsonBody: e.PARITY_MAX_JSON_BODY,
    ingestConcurrency: plan.ingestConcurrency,
    memoryLimit: e.PARITY_MEMORY_LIMIT ?? null,
    workerHeap: plan.workerHeap,
    ingestQueue: e.PARITY_INGEST_QUEUE,
    sessions: {
      idleMs: e.PARITY_SESSION_IDLE_MINUTES * 60_000,
      absoluteMs: e.PARITY_SESSION_MAX_HOURS * 3_600_000,
    },
    jsonBodyMs: e.PARITY_BODY_SECONDS * 1000,
    connections: {
      max: e.PARITY_MAX_CONNECTIONS,
      // Behind a trusted proxy every client shares its address: only the total is bounded.
      perAddress: e.PARITY_TRUST_PROXY.length > 0 ? null : e.PARITY_MAX_CONNECTIONS_PER_ADDRESS,
    },
    ingestPace: {
      minBytesPerSecond: e.PARITY_INGEST_MIN_RATE,
      windowMs: e.PARITY_INGEST_RATE_WINDOW_SECONDS * 1000,
      maxMs: e.PARITY_INGEST_MAX_SECONDS * 1000,
    },
    clockSkewMs: e.PARITY_CLOCK_SKEW_SECONDS * 1000,
    duckdbMemory: plan.duckdbMemory,
    duckdbThreads: e.PARITY_DUCKDB_THREADS ?? duckdbThreads(duckdbBytes(plan.duckdbMemory)),
    queryCache: e.PARITY_QUERY_CACHE === 'on',
    queryCacheCells: plan.cacheCells,
    // One read from the points at a time per 120 MB of DuckDB's pool (each can take much of it):
    // two at the default 256MB, one under the demo's 512MB budget.
    pointReads: e.PARITY_POINT_READS ?? Math.max(1, Math.floor(duckdbBytes(plan.duckdbMemory) / 120e6)),
    pointReadsWaiting: e.PARITY_POINT_READS_WAITING,
    alerts: e.PARITY_ALERTS === 'on',
    reviewSend: e.PARITY_REVIEW_SEND === 'on',
    rollups: e.PARITY_ROLLUPS === 'on',
    evaluateEveryMs: e.PARITY_EVALUATE_EVERY_SECONDS * 1000,
    retentionEveryMs: e.PARITY_RETENTION_EVERY_SECONDS * 1000,
    mailFrom: e.PARITY_MAIL_FROM,
    publicUrl: e.PARITY_PUBLIC_URL?.replace(/\/$/, ''),
    embedOrigins: e.PARITY_EMBED_ORIGINS,
    oidcFile: e.PARITY_OIDC_FILE ? resolve(e.PARITY_OIDC_FILE) : undefined,
    trustProxy: e.PARITY_TRUST_PROXY,
  };
}

const MB = 1024 ** 2;

/** An ingest worker's heap limits, and the batch size after which it ends (null: it never does). */
export interface WorkerHeap {
  oldMb: number;
  youngMb: number;
  retireAfterRows: number | null;
}

/**
 * Under PARITY_MEMORY_LIMIT the worker pair that carried a batch of this many rows or more ends
 * with it: their heaps (grown to their limits by then) go back to the work such a batch leaves
 * behind (its rollups' catch-up, its band evaluation), and the next batch starts a new pair
 * (≈ 0.4 s: README, Configuration). Smaller batches keep their pair.
 */
export const WORKER_RETIRE_ROWS = 1_000_000;

/**
 * The smallest DuckDB pool the room plans (docs/performance-log.md, Ingest: at 64 MB a 10M-point
 * push landed, but its release step, the rollup refresh and the band evaluation after it ran out
 * of memory; at 96 MB all of them ran, once the refresh stopped holding a block per thread and
 * statement until its commit). An explicit PARITY_DUCKDB_MEMORY below it is taken, with a warning
 * at start.
 */
export const DUCKDB_POOL_FLOOR_MB = 96;

/**
 * The pool a DuckDB thread is given: a thread of an aggregate holds its own hash tables and
 * quantile states, so the pool, not the cores, bounds how many may run. DuckDB's default is a
 * thread per core. The rollup refresh of a dense KPI in a 96 MB pool (tests/integration/
 * rollups.test.ts) ran on 1, 2, 4 and 8 threads and out of memory on 12 and 16: its edge lies
 * between 8 and 12 MB a thread, and this is two to three times that.
 */
export const DUCKDB_THREAD_BYTES = 24e6;

/**
 * DuckDB's threads for a pool of `poolBytes`: one per DUCKDB_THREAD_BYTES of it (4 at 96 MB, 10
 * at the default 256MB), no more than the host's cores, but two at least, even on one core: a
 * re-key of 500k points in a 64 MB pool ran out of memory on one thread and not on two
 * (tests/integration/duck-store.test.ts).
 */
export function duckdbThreads(poolBytes: number, cores: number = availableParallelism()): number {
  return Math.max(2, Math.min(cores, Math.floor(poolBytes / DUCKDB_THREAD_BYTES)));
}

/** A DuckDB memory size (`64MB`, `2GiB`, as PARITY_DUCKDB_MEMORY takes it) in bytes, as DuckDB reads it. */
export function duckdbBytes(size: string): number {
  if (!DUCKDB_SIZE.test(size.trim())) throw new RangeError(`not a DuckDB memory size: ${size}`);
  return sizeBytes(size);
}

/**
 * How the room shares PARITY_MEMORY_LIMIT (docs: README "Configuration"): DuckDB gets a quarter
 * (at least DUCKDB_POOL_FLOOR_MB: below it a 10M-point batch's release step and rollup refresh ran out of memory), one batch in flight per whole 256 MiB (1–4),
 * and the ingest workers — a parse and a spool worker per batch in flight — share an eighth
 * (16–48 MB of old space each; each thread also costs ~10 MB of its own) and end after a batch
 * of WORKER_RETIRE_ROWS. The rest is Node's own heap, the control plane and buffers.
 * Explicit PARITY_DUCKDB_MEMORY and PARITY_INGEST_CONCURRENCY win. Without a limit: 256 MB for
 * DuckDB, 4 batches, 48 MB per worker kept while the room runs, as before.
 */
export function memoryPlan(
  limit: number | null,
  explicit: { duckdbMemory?: string | undefined; ingestConcurrency?: number | undefined } = {},
): { duckdbMemory: string; ingestConcurrency: number; workerHeap: WorkerHeap; cacheCells: number } {
  if (limit === null)
    return {
      duckdbMemory: explicit.duckdbMemory ?? '256MB',
      ingestConcurrency: explicit.ingestConcurrency ?? 4,
      workerHeap: { oldMb: 48, youngMb: 8, retireAfterRows: null },
      cacheCells: Math.floor((128 * MB) / CACHE_CELL_BYTES),
    };
  const ingestConcurrency = explicit.ingestConcurrency ?? Math.min(4, Math.max(1, Math.floor(limit / (256 * MB))));
  const oldMb = Math.min(48, Math.max(16, Math.floor(limit / 8 / (2 * ingestConcurrency) / MB)));
  return {
    duckdbMemory: explicit.duckdbMemory ?? `${Math.max(DUCKDB_POOL_FLOOR_MB, Math.floor(limit / 4 / MB))}MB`,
    ingestConcurrency,
    workerHeap: { oldMb, youngMb: oldMb >= 32 ? 8 : 4, retireAfterRows: WORKER_RETIRE_ROWS },
    cacheCells: Math.floor(limit / 8 / CACHE_CELL_BYTES),
  };
}

/**
 * What one cached aggregate cell costs the heap, with the withheld result and the JSON kept for it
 * (series-service.ts): a red team measured the heap 180 MB up and the buffers 37 MB for 125k
 * cells cached (~1.7 KB a cell); 512 bytes, counted before, let the cache hold 3.5 times its share.
 */
export const CACHE_CELL_BYTES = 1792;

/** Below this budget the process settings of {@link processMemorySettings} are worth their cost. */
const TIGHT_BUDGET = 1024 * MB;

/** What a tight budget wants of the process that {@link processMemorySettings} found missing. */
export interface ProcessMemorySettings {
  /** Flags for `node` itself, before the script. */
  nodeFlags: string[];
  /** Variables of the process's environment, read by glibc as the process starts. */
  env: Record<string, string>;
}

/**
 * What a tight PARITY_MEMORY_LIMIT also wants of the process, which the room cannot change once
 * running (README "Configuration"): Node's main-thread young generation at 1 MB a semi-space and
 * glibc's malloc at two arenas: what they save is measured in docs/performance-log.md (Ingest).
 * Only those the process lacks; none when the budget is roomy or not set. `bin/parity` starts
 * Node with them (bin/process-settings.js prints them).
 */
export function processMemorySettings(
  limit: number | null,
  env: Readonly<Record<string, string | undefined>>,
  execArgv: readonly string[],
): ProcessMemorySettings {
  const wanted: ProcessMemorySettings = { nodeFlags: [], env: {} };
  if (limit === null || limit >= TIGHT_BUDGET) return wanted;
  const semi = /--max[-_]semi[-_]space[-_]size(=|\s|$)/; // Node takes V8's flags spelled either way
  if (!execArgv.some((a) => semi.test(a)) && !semi.test(env['NODE_OPTIONS'] ?? ''))
    wanted.nodeFlags.push('--max-semi-space-size=1');
  if (!env['MALLOC_ARENA_MAX']) wanted.env['MALLOC_ARENA_MAX'] = '2';
  return wanted;
}

/**
 * The line start-up prints when a process under a tight budget lacks {@link processMemorySettings}
 * (it was started with `node` rather than `bin/parity`); undefined when it has them all.
 */
export function processMemoryHint(
  limit: number | null,
  env: Readonly<Record<string, string | undefined>>,
  execArgv: readonly string[],
): string | undefined {
  const wanted = processMemorySettings(limit, env, execArgv);
  const missing = [
    ...wanted.nodeFlags.map((f) => `NODE_OPTIONS=${f}`),
    ...Object.entries(wanted.env).map(([k, v]) => `${k}=${v}`),
  ];
  if (missing.length === 0) return undefined;
  return `a budget this tight also wants the process started with ${missing.join(' and ')}, which bin/parity applies (README, Configuration)`;
}
