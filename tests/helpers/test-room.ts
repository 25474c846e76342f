import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { inject } from 'vitest';
import { createToken, type Role } from '../../services/governance/token-repository.js';
import { buildApp } from '../../assembly/app.js';
import { TestClock, type Clock } from '../../services/platform/clock.js';
import { loadConfig, type Config } from '../../services/platform/config.js';
import { demoAgreementFile } from '../../services/platform/paths.js';
import { type Room } from '../../services/platform/room.js';
import { openRoom } from '../../assembly/open-room.js';
import { createScratchDatabase } from './scratch-db.js';

/** A fresh, empty PostgreSQL database for one suite, or undefined to use PGlite. */
export async function freshDatabaseUrl(): Promise<{ url: string | undefined; drop: () => Promise<void> }> {
  const admin = inject('pgAdminUrl');
  if (!admin) return { url: undefined, drop: async () => {} };
  return createScratchDatabase(admin);
}

/**
 * A fresh control database for a room on `dataDir`, a copy of the run's template (see
 * tests/helpers/global-setup.ts): migrated, or with `migrated: false` as a first start finds it.
 * With a server, a new database (`url`); with PGlite (`url` undefined), the template's embedded
 * cluster copied into `dataDir`, where the room opens it.
 */
export async function freshControlDb(
  dataDir: string,
  opts: { migrated?: boolean } = {},
): Promise<{ url: string | undefined; drop: () => Promise<void> }> {
  const migrated = opts.migrated ?? true;
  const admin = inject('pgAdminUrl');
  if (admin) return createScratchDatabase(admin, 'parity_t', (migrated && inject('pgTemplate')) || undefined);
  const template = inject(migrated ? 'pgliteTemplateDir' : 'pgliteEmptyDir');
  if (template) cpSync(template, dataDir, { recursive: true });
  return { url: undefined, drop: async () => {} };
}

export interface TestRoom {
  room: Room;
  app: FastifyInstance;
  url: string;
  dataDir: string;
  databaseUrl: string | undefined;
  clock: Clock;
  logs: string[];
  tokens: Record<string, string>;
  token(partner: string | null, role: Role): Promise<string>;
  /** The room's /metrics text, read with an operator token (only the operator reads them). */
  metrics(): Promise<string>;
  close(): Promise<void>;
}

/**
 * A room on a temp data directory (DuckDB file on disk), its own control database, listening
 * on a free port; every log line captured in `logs`.
 */
export async function startTestRoom(
  opts: { env?: Record<string, string>; clock?: Clock; agreementFile?: string; listen?: boolean } = {},
): Promise<TestRoom> {
  const dataDir = mkdtempSync(join(tmpdir(), 'parity-test-'));
  const db = await freshControlDb(dataDir);
  // Retention is run by the tests that are about it (runRetention): suites date points freely against their test clock.
  const config: Config = loadConfig({
    PARITY_DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    PORT: '0',
    HOST: '127.0.0.1',
    PARITY_RETENTION_EVERY_SECONDS: '0',
    // Likewise the monthly review's scheduled send (tests/integration/review-send.test.ts turns it on).
    PARITY_REVIEW_SEND: 'off',
    ...(db.url ? { DATABASE_URL: db.url } : {}),
    ...opts.env,
  });
  const clock = opts.clock ?? new TestClock('2026-11-23T12:00:00Z');
  const room = await openRoom(config, {
    clock,
    defaultAgreementFile: opts.agreementFile ?? demoAgreementFile(),
    // PGlite: the template copy in dataDir (cheaper than an in-memory initdb, as fast to query).
    memoryControlDb: !db.url && !inject('pgliteTemplateDir'),
  });
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const app = await buildApp(room, { logStream });
  let url = '';
  if (opts.listen !== false) url = await app.listen({ port: 0, host: '127.0.0.1' });
  else await app.ready();
  const tokens: Record<string, string> = {};
  const token = async (partner: string | null, role: Role) => {
    const key = `${partner ?? '-'}:${role}`;
    tokens[key] ??= (await createToken(room.control.db, { partnerId: partner, role, name: key }, clock.now())).token;
    return tokens[key]!;
  };
  return {
    room,
    app,
    url,
    dataDir,
    databaseUrl: db.url,
    clock,
    logs,
    tokens,
    token,
    metrics: async () => {
      const res = await fetch(`${url}/metrics`, {
        headers: { authorization: `Bearer ${await token(null, 'operator')}` },
      });
      if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${await res.text()}`);
      return res.text();
    },
    close: async () => {
      await app.close();
      await room.close();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The rows of a DuckDB table of the room (points, batches): what landed, whatever the snapshot. */
export async function rowCount(t: Pick<TestRoom, 'room'>, table: 'points' | 'batches'): Promise<number> {
  const c = await t.room.duck.connect();
  try {
    return Number((await c.runAndReadAll(`SELECT count(*)::BIGINT AS n FROM ${table}`)).getRowObjectsJson()[0]!['n']);
  } finally {
    t.room.duck.release(c);
  }
}
