import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import { buildApp } from '../../assembly/app.js';
import { loadConfig } from '../../services/platform/config.js';
import { demoAgreementFile, packageRoot } from '../../services/platform/paths.js';
import { type Room } from '../../services/platform/room.js';
import { openRoom } from '../../assembly/open-room.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { parityArgs } from '../helpers/spawn-room.js';
import { freshControlDb } from '../helpers/test-room.js';

const run = promisify(execFile);
const dataDir = mkdtempSync(join(tmpdir(), 'parity-rotate-'));
let drop = async () => {};
afterAll(async () => {
  await drop();
  rmSync(dataDir, { recursive: true, force: true });
});

const points = (day: string, subjects: string[]): TestPoint[] =>
  subjects.map((subject, i) => ({ kpi: 'lead_time', at: `${day}T08:00:00Z`, value: 20 + i, subject }));

describe('parity secret rotate', () => {
  it('re-keys every stored pseudonym; new data for a known subject gets the same pseudonym; aggregates and digests do not change', async () => {
    const db = await freshControlDb(dataDir);
    drop = db.drop;
    const env = {
      PARITY_DATA_DIR: dataDir,
      DATABASE_URL: db.url ?? '',
      PARITY_AGREEMENT: demoAgreementFile(),
      PARITY_RETENTION_EVERY_SECONDS: '0',
      PARITY_ALERTS: 'off',
      LOG_LEVEL: 'warn',
    };
    let room: Room;
    let app: FastifyInstance;
    let url = '';
    const start = async () => {
      room = await openRoom(loadConfig(env));
      app = await buildApp(room, { logStream: new Writable({ write: (_c, _e, cb) => cb() }) });
      url = await app.listen({ port: 0, host: '127.0.0.1' });
    };
    const stop = async () => {
      await app.close();
      await room.close();
    };
    const pseudonyms = async () => {
      const c = await room.duck.connect();
      try {
        return new Set(
          (await c.runAndReadAll('SELECT DISTINCT subject FROM points'))
            .getRowObjectsJson()
            .map((r) => String(r['subject'])),
        );
      } finally {
        room.duck.release(c);
      }
    };

    await start();
    const ingest = (await createToken(room!.control.db, { partnerId: 'acme', role: 'ingest', name: 'erp' }, new Date()))
      .token;
    const steering = (
      await createToken(room!.control.db, { partnerId: 'acme', role: 'steering', name: 'sc' }, new Date())
    ).token;
    const push = async (pts: TestPoint[]) => {
      const r = await fetch(`${url}/v1/points`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ingest}`, 'content-type': 'application/x-ndjson' },
        body: ndjson(pts),
      });
      expect(r.status).toBe(202);
    };
    const week = async () => {
      const r = await fetch(`${url}/v1/kpis/lead_time/series?grain=week&from=2026-11-02&to=2026-11-08`, {
        headers: { authorization: `Bearer ${steering}` },
      });
      return (await r.json()) as { digest: string; snapshot: number; cells: { state: string }[] };
    };
    await push(points('2026-11-02', ['S-0', 'S-1', 'S-2', 'S-3', 'S-4', 'S-5']));
    const before = await week();
    expect(before.cells[0]!.state).toBe('ok');
    const old = await pseudonyms();
    expect(old.size).toBe(6);
    await stop();
    const secretBefore = readFileSync(join(dataDir, 'secret'), 'utf8');

    const r = await run(process.execPath, parityArgs(['secret', 'rotate']), {
      cwd: packageRoot(),
      env: { ...process.env, ...env },
    });
    expect(r.stdout).toContain('rotated: generation 2; 6 pseudonyms re-keyed in 6 points');
    expect(statSync(join(dataDir, 'pseudonym-keys')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dataDir, 'secret'), 'utf8')).toBe(secretBefore);

    await start();
    expect(room!.pseudonymRotations).toHaveLength(1);
    const rekeyed = await pseudonyms();
    expect(rekeyed.size).toBe(6);
    for (const p of old) expect(rekeyed.has(p)).toBe(false);
    // Same numbers, same source: the rotation changed no aggregate and no snapshot.
    expect(await week()).toEqual(before);

    // Known subjects keep their pseudonym after the rotation; a new one adds one.
    await push(points('2026-11-03', ['S-0', 'S-1', 'S-2', 'S-3', 'S-9'])); // five: the day passes k
    expect((await week()).cells[0]!.state).toBe('ok'); // lead_time shows no n; the pseudonyms below count the subjects
    expect((await pseudonyms()).size).toBe(7);
    const audit = await room!.control.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'secret.rotated')
      .execute();
    expect(audit).toHaveLength(1);
    // No counts in an entry every partner reads (the room's points less one's own are the others').
    expect(audit[0]!.details).toEqual({ generation: 2 });
    await stop();
  });
});
