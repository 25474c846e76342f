import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { freshControlDb, startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { runParity, spawnRoom } from '../helpers/spawn-room.js';
import { csv, leadTimePoints, ndjson } from '../helpers/points.js';
import { timeout } from '../helpers/timeouts.js';
import { packageRoot } from '../../services/platform/paths.js';

const execFileAsync = promisify(execFile);

/** `parity <args>`, on PGlite unless the test says otherwise. */
const parity = (args: string[], env: Record<string, string> = {}) => runParity(args, { DATABASE_URL: '', ...env });

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'parity-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parity agreement validate', () => {
  it('accepts the demo agreement', async () => {
    const r = await parity(['agreement', 'validate', 'fixtures/demo-agreement.yaml']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('valid (2 partners, 5 KPIs)');
  });

  it('prints every problem with its path and exits 1', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      `partnership: { id: p, title: P, timezone: Mars/Olympus }
partners: [{ id: a, name: A }, { id: b, name: B }]
steering: [{ name: C, email: c@example.org }]
kpis:
  - { id: k, title: K, unit: h, subject: order, measure: p50, grains: [week], disclosure: partnership, breakdown: per_partner,
      band: { upper: high }, evaluate: { grain: week }, freshness: { every: P1D, grace: 6h }, owners: {}, escalation: { ackWithin: P1D } }
`,
    );
    const r = await parity(['agreement', 'validate', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('kpis[0].band.upper: expected number, received string');
    expect(r.stderr).toContain('kpis[0].freshness.grace: expected an ISO-8601 duration');
    expect(r.stderr).toContain('partnership.timezone: expected an IANA time zone');
    expect(r.stderr).toMatch(/3 problems/);
  });
});

describe('parity serve with a small DuckDB pool', () => {
  it('starts, warns that a large batch can run its release step and rollups out of memory, and names the process settings a tight budget wants', async () => {
    const room = await spawnRoom({
      DATABASE_URL: '',
      PARITY_DATA_DIR: join(dir, 'small-pool'),
      PARITY_AGREEMENT: 'fixtures/demo-agreement.yaml',
      PARITY_MEMORY_LIMIT: '400MB',
      PARITY_DUCKDB_MEMORY: '64MB',
      // Neither process setting, whatever the caller's environment holds.
      NODE_OPTIONS: '',
      MALLOC_ARENA_MAX: '',
    });
    try {
      await expect
        .poll(room.output, { timeout: timeout(30_000) })
        .toMatch(/warning: DuckDB's pool \(PARITY_DUCKDB_MEMORY=64MB\) is below 96MB/);
      expect(room.output()).toMatch(
        /hint: a budget this tight also wants the process started with NODE_OPTIONS=--max-semi-space-size=1 and MALLOC_ARENA_MAX=2, which bin\/parity applies \(README, Configuration\)/,
      );
    } finally {
      room.child.kill('SIGTERM');
      expect(await room.exited).toBe(0);
    }
  });
});

describe('bin/parity under a tight budget', () => {
  /** The room's own process as the kernel sees it: its command line and environment. */
  const processOf = (pid: number) => ({
    argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean),
    env: readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean),
  });

  it('starts Node with the settings the budget wants, keeps those the caller set, and leaves no launcher behind', async () => {
    for (const [name, extra, wantedArena] of [
      ['neither set', {}, 'MALLOC_ARENA_MAX=2'],
      ['arenas set by the caller', { MALLOC_ARENA_MAX: '4' }, 'MALLOC_ARENA_MAX=4'],
    ] as const) {
      const dataDir = join(dir, `launcher-${name.replace(/ /g, '-')}`);
      const db = await freshControlDb(dataDir);
      onTestFinished(() => db.drop());
      const room = await spawnRoom(
        {
          DATABASE_URL: db.url ?? '',
          PARITY_DATA_DIR: dataDir,
          PARITY_AGREEMENT: 'fixtures/demo-agreement.yaml',
          PARITY_MEMORY_LIMIT: '400MB',
          NODE_OPTIONS: '',
          MALLOC_ARENA_MAX: '',
          ...extra,
        },
        'serve',
        timeout(60_000),
        'launcher',
      );
      try {
        // The spawned pid is Node itself (the launcher replaced itself), flag before the script.
        const p = processOf(room.child.pid!);
        expect(p.argv.slice(1), name).toEqual([
          '--max-semi-space-size=1',
          join(packageRoot(), 'bin/parity.js'),
          'serve',
        ]);
        expect(basename(realpathSync(`/proc/${room.child.pid}/exe`)), name).toMatch(/^node/);
        expect(
          p.env.filter((v) => v.startsWith('MALLOC_ARENA_MAX=')),
          name,
        ).toEqual([wantedArena]);
        await expect.poll(room.output, { timeout: timeout(30_000) }).toMatch(/memory budget 381 MiB/);
        expect(room.output(), name).not.toMatch(/hint:/);
      } finally {
        room.child.kill('SIGTERM');
        expect(await room.exited, name).toBe(0);
      }
    }
  });

  it('adds nothing to a roomy budget or to none', async () => {
    for (const budget of ['', '2GB']) {
      const r = await execFileAsync(process.execPath, [join(packageRoot(), 'bin/process-settings.js')], {
        env: { ...process.env, PARITY_MEMORY_LIMIT: budget, NODE_OPTIONS: '', MALLOC_ARENA_MAX: '' },
      });
      expect(r.stdout, budget).toBe('');
    }
    const tight = await execFileAsync(process.execPath, [join(packageRoot(), 'bin/process-settings.js')], {
      env: { ...process.env, PARITY_MEMORY_LIMIT: '512MB', NODE_OPTIONS: '', MALLOC_ARENA_MAX: '' },
    });
    expect(tight.stdout).toBe('--max-semi-space-size=1\nMALLOC_ARENA_MAX=2\n');
  });
});

describe('configuration errors', () => {
  it('a bad variable stops start-up with one line naming it', async () => {
    const r = await parity(['serve'], { PORT: 'eighty', PARITY_DATA_DIR: join(dir, 'cfg') });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^parity: invalid configuration: PORT: [^\n]+$/);
  });

  it('serve without an agreement says what to set', async () => {
    const dataDir = join(dir, 'noagreement');
    const db = await freshControlDb(dataDir, { migrated: false });
    onTestFinished(() => db.drop());
    const r = await parity(['serve'], {
      PARITY_DATA_DIR: dataDir,
      PORT: '0',
      PARITY_AGREEMENT: '',
      DATABASE_URL: db.url ?? '',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('set PARITY_AGREEMENT');
  });
});

describe('parity push', () => {
  let t: TestRoom;
  let token: string;
  beforeAll(async () => {
    t = await startTestRoom();
    token = await t.token('acme', 'ingest');
  });
  afterAll(async () => t?.close());

  it('streams a CSV file, prints a summary, and pushing it again lands nothing new', async () => {
    const file = join(dir, 'points.csv');
    writeFileSync(file, csv(leadTimePoints(500, 'PUSH')));
    const first = await parity(['push', file, '--url', t.url, '--token', token]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(
      /^landed: batch [0-9a-f-]{36}, snapshot \d+, 500 accepted, 0 rejected, checksum [0-9a-f]{64}$/m,
    );
    expect(first.stderr).toContain('100%');
    const again = await parity(['push', file, '--url', t.url], { PARITY_TOKEN: token });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already landed');
    expect(again.stdout.match(/batch (\S+),/)![1]).toBe(first.stdout.match(/batch (\S+),/)![1]);
  });

  it('exits non-zero with the row errors when the room refuses the file', async () => {
    const file = join(dir, 'bad.ndjson');
    writeFileSync(
      file,
      ndjson([...leadTimePoints(2, 'BAD'), { kpi: 'lead_time', at: 'yesterday', value: 1, subject: 'x' }]),
    );
    const r = await parity(['push', file, '--url', t.url, '--token', token]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('push failed after 1 attempt: 422');
    expect(r.stderr).toContain('row 3: at: expected an ISO-8601 date-time');
  });

  it('retries 503 and network errors with the same Idempotency-Key and lands once', async () => {
    // A flaky proxy in front of the room: refuses twice, drops one connection, then forwards.
    const keys: string[] = [];
    let calls = 0;
    const proxy = createServer((req, res) => {
      calls++;
      keys.push(String(req.headers['idempotency-key']));
      if (calls <= 2) {
        req.resume();
        res
          .writeHead(503, { 'retry-after': '0', 'content-type': 'application/problem+json' })
          .end('{"title":"Service Unavailable","status":503}');
        return;
      }
      if (calls === 3) {
        req.socket.destroy();
        return;
      }
      const fwd = httpRequest(
        `${t.url}${req.url}`,
        { method: req.method, headers: req.headers as IncomingHttpHeaders },
        (up) => {
          res.writeHead(up.statusCode!, up.headers);
          up.pipe(res);
        },
      );
      req.pipe(fwd);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as { port: number }).port;
    const file = join(dir, 'flaky.ndjson');
    writeFileSync(file, ndjson(leadTimePoints(50, 'FLAKY')));
    const r = await parity(['push', file, '--url', `http://127.0.0.1:${port}`, '--token', token]);
    proxy.close();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/attempt 1 failed \(503/);
    expect(r.stderr).toMatch(/attempt 3 failed \(network error/);
    expect(calls).toBe(4);
    expect(new Set(keys).size).toBe(1);
    expect(r.stdout).toContain('50 accepted');
  });
});

describe('parity token create and migrate on a stopped room', () => {
  it('creates a token that the room then accepts, printed once; refuses while the embedded room runs', async () => {
    const dataDir = join(dir, 'room');
    const db = await freshControlDb(dataDir, { migrated: false });
    const env = {
      PARITY_DATA_DIR: dataDir,
      PARITY_AGREEMENT: 'fixtures/demo-agreement.yaml',
      DATABASE_URL: db.url ?? '',
    };
    onTestFinished(() => db.drop());
    const m = await parity(['migrate'], env);
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toContain(db.url ? 'PostgreSQL (DATABASE_URL)' : 'embedded PGlite');
    const bad = await parity(['token', 'create', '--partner', 'acme', '--role', 'wizard'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('expected one of ingest, analyst');
    // The partner must exist: the agreement is installed on first serve, so none yet.
    const none = await parity(['token', 'create', '--partner', 'acme', '--role', 'ingest'], env);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no partner acme');

    let room = await spawnRoom(env);
    const busy = await parity(['token', 'create', '--partner', 'acme', '--role', 'ingest'], env);
    if (db.url) {
      // With a server the control plane is shared: creating a token beside a running room is fine.
      expect(busy.code, busy.stderr).toBe(0);
    } else {
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(/the room \(pid \d+\) is running/);
    }
    room.child.kill('SIGTERM');
    expect(await room.exited).toBe(0);

    const made = await parity(
      ['token', 'create', '--partner', 'acme', '--role', 'ingest', '--name', 'nightly feed'],
      env,
    );
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toContain('directly in');
    const token = made.stdout.trim();
    expect(token).toMatch(/^pty_[A-Za-z0-9_-]{43}$/);
    room = await spawnRoom(env);
    try {
      const res = await fetch(`${room.url}/v1/points`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body: ndjson(leadTimePoints(3, 'TOK')),
      });
      expect(res.status).toBe(202);
    } finally {
      room.child.kill('SIGTERM');
      await room.exited;
    }
  });
});
