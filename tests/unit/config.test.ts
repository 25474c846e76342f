import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  DUCKDB_POOL_FLOOR_MB,
  DUCKDB_THREAD_BYTES,
  duckdbBytes,
  duckdbThreads,
  loadConfig,
  processMemoryHint,
  processMemorySettings,
  WORKER_RETIRE_ROWS,
} from '../../services/platform/config.js';

describe('configuration', () => {
  it('has sensible defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      databaseUrl: undefined,
      logLevel: 'info',
      maxBody: 1024 ** 3,
      ingestConcurrency: 4,
    });
    expect(c.dataDir).toMatch(/\/data$/);
  });

  it('reads sizes with units and treats empty strings as unset', () => {
    expect(loadConfig({ PARITY_MAX_BODY: '64kb', PORT: '' }).maxBody).toBe(64_000);
    expect(loadConfig({ PARITY_MAX_BODY: '2MiB' }).maxBody).toBe(2 * 1024 * 1024);
    expect(loadConfig({ PORT: '' }).port).toBe(8080);
  });

  it('reads embedding origins as a list', () => {
    expect(loadConfig({}).embedOrigins).toEqual([]);
    expect(
      loadConfig({ PARITY_EMBED_ORIGINS: 'https://intranet.acme.example, http://localhost:3000/' }).embedOrigins,
    ).toEqual(['https://intranet.acme.example', 'http://localhost:3000']);
  });

  it('reads the trusted proxies as addresses and CIDR ranges', () => {
    expect(loadConfig({}).trustProxy).toEqual([]);
    expect(loadConfig({ PARITY_TRUST_PROXY: '127.0.0.1, 10.0.0.0/8,::1, fd00::/8' }).trustProxy).toEqual([
      '127.0.0.1',
      '10.0.0.0/8',
      '::1',
      'fd00::/8',
    ]);
  });

  it.each([
    ['PARITY_TRUST_PROXY', 'true', /^invalid configuration: PARITY_TRUST_PROXY: true is not an address/],
    ['PARITY_TRUST_PROXY', '10.0.0.0/33', /^invalid configuration: PARITY_TRUST_PROXY: 10\.0\.0\.0\/33 is not/],
    ['PARITY_TRUST_PROXY', '0.0.0.0/0/1', /^invalid configuration: PARITY_TRUST_PROXY: /],
    ['PORT', 'eighty', /^invalid configuration: PORT: /],
    ['PORT', '70000', /^invalid configuration: PORT: /],
    ['DATABASE_URL', 'mysql://user:hunter2@db/x', /^invalid configuration: DATABASE_URL: expected a postgres/],
    ['LOG_LEVEL', 'loud', /^invalid configuration: LOG_LEVEL: /],
    ['PARITY_SECRET', 'short', /^invalid configuration: PARITY_SECRET: must be at least 32 characters$/],
    ['PARITY_MAX_BODY', 'lots', /^invalid configuration: PARITY_MAX_BODY: /],
    ['SMTP_URL', 'http://mail', /^invalid configuration: SMTP_URL: /],
    [
      'PARITY_EMBED_ORIGINS',
      'https://intranet.example/page',
      /^invalid configuration: PARITY_EMBED_ORIGINS: .* is not an origin/,
    ],
    ['PARITY_EMBED_ORIGINS', '*', /^invalid configuration: PARITY_EMBED_ORIGINS: \* is not an origin/],
    ['PARITY_RETENTION_EVERY_SECONDS', '-1', /^invalid configuration: PARITY_RETENTION_EVERY_SECONDS: /],
  ])('%s=%s stops start-up with one line naming the variable', (name, value, message) => {
    let error: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const text = (error as Error).message;
    expect(text).toMatch(message);
    expect(text).not.toContain('\n');
    // A bad value is not echoed: it may hold a password.
    expect(text).not.toContain('hunter2');
  });
});

describe('PARITY_MEMORY_LIMIT', () => {
  it('sizes DuckDB, the batches in flight and the worker heaps from one budget', () => {
    const c = loadConfig({ PARITY_MEMORY_LIMIT: '512MiB' });
    expect(c.memoryLimit).toBe(512 * 1024 ** 2);
    expect(c.duckdbMemory).toBe('128MB');
    expect(c.ingestConcurrency).toBe(2);
    expect(c.workerHeap).toEqual({ oldMb: 16, youngMb: 4, retireAfterRows: WORKER_RETIRE_ROWS });
    const big = loadConfig({ PARITY_MEMORY_LIMIT: '2GiB' });
    expect([big.duckdbMemory, big.ingestConcurrency, big.workerHeap.oldMb]).toEqual(['512MB', 4, 32]);
    // 400 MB: a quarter is 95 MiB, and the floor gives DuckDB 96 MB.
    expect(loadConfig({ PARITY_MEMORY_LIMIT: '400MB' }).duckdbMemory).toBe('96MB');
    const small = loadConfig({ PARITY_MEMORY_LIMIT: '256MiB' });
    expect([small.duckdbMemory, small.ingestConcurrency, small.workerHeap]).toEqual([
      '96MB',
      1,
      { oldMb: 16, youngMb: 4, retireAfterRows: WORKER_RETIRE_ROWS },
    ]);
  });

  it('explicit settings win, and without a limit the defaults are as before', () => {
    const c = loadConfig({
      PARITY_MEMORY_LIMIT: '512MiB',
      PARITY_DUCKDB_MEMORY: '300MB',
      PARITY_INGEST_CONCURRENCY: '3',
    });
    expect([c.duckdbMemory, c.ingestConcurrency]).toEqual(['300MB', 3]);
    expect(c.workerHeap.oldMb).toBe(16);
    const d = loadConfig({});
    expect([d.memoryLimit, d.duckdbMemory, d.ingestConcurrency, d.workerHeap.oldMb]).toEqual([null, '256MB', 4, 48]);
    expect(d.workerHeap.retireAfterRows).toBeNull(); // workers kept whatever the batch
  });

  it('reads DuckDB memory sizes as DuckDB does, to compare them with the planned floor', () => {
    expect(['64MB', '128MB', '1.5GB', '2GiB', '512 KiB', '128mib'].map(duckdbBytes)).toEqual([
      64e6,
      128e6,
      1.5e9,
      2 * 1024 ** 3,
      512 * 1024,
      128 * 1024 ** 2,
    ]);
    expect(() => duckdbBytes('lots')).toThrow(/not a DuckDB memory size/);
    // The plan never goes below the floor; an explicit value may (and start-up warns).
    expect(duckdbBytes(loadConfig({ PARITY_MEMORY_LIMIT: '256MB' }).duckdbMemory)).toBe(DUCKDB_POOL_FLOOR_MB * 1e6);
    expect(loadConfig({ PARITY_MEMORY_LIMIT: '400MB', PARITY_DUCKDB_MEMORY: '64MB' }).duckdbMemory).toBe('64MB');
  });

  it("gives DuckDB as many threads as its pool feeds, no more than the host's cores but two at least", () => {
    // A sixteen-core host: DuckDB's own default would run sixteen threads in any pool.
    expect([64e6, 96e6, 128e6, 256e6, 512e6].map((pool) => duckdbThreads(pool, 16))).toEqual([2, 4, 5, 10, 16]);
    expect(duckdbThreads(256e6, 2)).toBe(2);
    expect(duckdbThreads(96e6, 1)).toBe(2); // two at least, even on one core
    expect(duckdbThreads(DUCKDB_THREAD_BYTES, 8)).toBe(2);
    expect(duckdbThreads(DUCKDB_THREAD_BYTES * 3, 8)).toBe(3);
    // From the planned pool, or as set.
    const budget = loadConfig({ PARITY_MEMORY_LIMIT: '400MB' });
    expect(budget.duckdbThreads).toBe(duckdbThreads(96e6));
    expect(budget.duckdbThreads).toBeLessThanOrEqual(4);
    expect(loadConfig({}).duckdbThreads).toBe(duckdbThreads(256e6));
    expect(loadConfig({ PARITY_MEMORY_LIMIT: '400MB', PARITY_DUCKDB_THREADS: '1' }).duckdbThreads).toBe(1);
    for (const bad of ['0', '-2', '1.5', 'many', '2000'])
      expect(() => loadConfig({ PARITY_DUCKDB_THREADS: bad })).toThrow(
        /^invalid configuration: PARITY_DUCKDB_THREADS: /,
      );
  });

  it('refuses a budget too small to run the room, naming the variable', () => {
    expect(() => loadConfig({ PARITY_MEMORY_LIMIT: '100MB' })).toThrow(/PARITY_MEMORY_LIMIT: expected at least 256MB/);
    // The smallest budget the message names is accepted as written (256MB = 244 MiB: one batch).
    expect(loadConfig({ PARITY_MEMORY_LIMIT: '256MB' }).ingestConcurrency).toBe(1);
    expect(() => loadConfig({ PARITY_MEMORY_LIMIT: 'lots' })).toThrow(/PARITY_MEMORY_LIMIT/);
  });

  it('names the process settings a tight budget also wants, and only those missing', () => {
    const limit = (v: string) => loadConfig({ PARITY_MEMORY_LIMIT: v }).memoryLimit;
    const both = /NODE_OPTIONS=--max-semi-space-size=1 and MALLOC_ARENA_MAX=2/;
    expect(processMemoryHint(limit('400MB'), {}, [])).toMatch(both);
    expect(processMemoryHint(limit('1000MB'), {}, [])).toMatch(both); // 954 MiB: still under 1 GiB
    // The young generation set either way: on the command line or in NODE_OPTIONS.
    for (const [env, argv] of [
      [{ NODE_OPTIONS: '--max-semi-space-size=2' }, []],
      [{ NODE_OPTIONS: '--enable-source-maps --max-semi-space-size 1' }, []],
      [{}, ['--max-semi-space-size=4']],
      [{}, ['--max-semi-space-size', '2']],
      [{ NODE_OPTIONS: '--max_semi_space_size=1' }, []],
    ] as const) {
      const hint = processMemoryHint(limit('400MB'), env, argv);
      expect(hint).toMatch(/started with MALLOC_ARENA_MAX=2, which bin\/parity applies \(/);
      expect(hint).not.toMatch(/semi-space/);
    }
    expect(processMemoryHint(limit('400MB'), { MALLOC_ARENA_MAX: '2' }, [])).toMatch(
      /started with NODE_OPTIONS=--max-semi-space-size=1, which bin\/parity applies \(/,
    );
    // A flag that only starts like it is not it.
    expect(processMemoryHint(limit('400MB'), { NODE_OPTIONS: '--max-semi-space-sizes=1' }, [])).toMatch(both);
    // Nothing to say: both set, a roomy budget, or none.
    expect(
      processMemoryHint(limit('400MB'), { MALLOC_ARENA_MAX: '2', NODE_OPTIONS: '--max-semi-space-size=1' }, []),
    ).toBeUndefined();
    expect(processMemoryHint(limit('1GiB'), {}, [])).toBeUndefined();
    expect(processMemoryHint(limit('2GB'), {}, [])).toBeUndefined();
    expect(processMemoryHint(null, {}, [])).toBeUndefined();
  });

  it('lists the same settings for bin/parity to start Node with: flags for node, variables for the process', () => {
    const limit = (v: string) => loadConfig({ PARITY_MEMORY_LIMIT: v }).memoryLimit;
    expect(processMemorySettings(limit('400MB'), {}, [])).toEqual({
      nodeFlags: ['--max-semi-space-size=1'],
      env: { MALLOC_ARENA_MAX: '2' },
    });
    expect(processMemorySettings(limit('400MB'), { MALLOC_ARENA_MAX: '8' }, [])).toEqual({
      nodeFlags: ['--max-semi-space-size=1'],
      env: {},
    });
    expect(processMemorySettings(limit('400MB'), { NODE_OPTIONS: '--max-semi-space-size=4' }, [])).toEqual({
      nodeFlags: [],
      env: { MALLOC_ARENA_MAX: '2' },
    });
    for (const roomy of [limit('1GiB'), null])
      expect(processMemorySettings(roomy, {}, [])).toEqual({ nodeFlags: [], env: {} });
  });
});
