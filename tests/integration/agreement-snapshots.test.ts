// `?snapshot=N` returns the same bytes forever, or a refusal (docs/privacy.md §3). A new
// agreement version changes what a snapshot is answered under (its version number in every body,
// its rules, for a new time zone the local days of every point), so it comes into force as a
// snapshot of its own, and the snapshots before it are refused from then on. The disclosure red
// team of 2026-12-05 read `?snapshot=21` on Berlin days before a zone change and on UTC days after.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DuckDBInstance } from '@duckdb/node-api';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { buildApp } from '../../assembly/app.js';
import { openRoom } from '../../assembly/open-room.js';
import { createToken } from '../../services/governance/token-repository.js';
import { loadConfig } from '../../services/platform/config.js';
import { demoAgreementFile } from '../../services/platform/paths.js';
import type { Room } from '../../services/platform/room.js';
import { ndjson } from '../helpers/points.js';
import { freshControlDb } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

// Each test's own room on disk, reopened where the test is about a restart.
let dataDir: string;
let db: Awaited<ReturnType<typeof freshControlDb>>;
let env: Record<string, string>;
let room: Room;
let app: FastifyInstance;
let url: string;
const tokens = new Map<string, string>();

async function open(): Promise<void> {
  room = await openRoom(loadConfig(env));
  app = await buildApp(room, { logStream: new Writable({ write: (_c, _e, cb) => cb() }) });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
}
async function shut(): Promise<void> {
  await app.close();
  await room.close();
}
async function token(partner: string, role: 'ingest' | 'analyst' | 'admin'): Promise<string> {
  const key = `${partner}:${role}`;
  if (!tokens.has(key))
    tokens.set(key, (await createToken(room.control.db, { partnerId: partner, role, name: key }, new Date())).token);
  return tokens.get(key)!;
}

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'parity-agreement-snapshots-'));
  db = await freshControlDb(dataDir);
  env = {
    PARITY_DATA_DIR: dataDir,
    PARITY_AGREEMENT: demoAgreementFile(),
    PARITY_ALERTS: 'off',
    // One writer: a batch that waits beside a new version lands after it (the room's own work
    // takes a freed writer first; with more, the version may wait for the batch's writer instead).
    PARITY_INGEST_CONCURRENCY: '1',
    PARITY_RETENTION_EVERY_SECONDS: '0',
    PARITY_REVIEW_SEND: 'off',
    LOG_LEVEL: 'warn',
    ...(db.url ? { DATABASE_URL: db.url } : {}),
  };
  tokens.clear();
  await open();
});
afterEach(async () => {
  await shut().catch(() => undefined);
  await db.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

async function push(partner: string, at: string, n: number, tag: string): Promise<void> {
  const body = ndjson(
    Array.from({ length: n }, (_, i) => ({ kpi: 'lead_time', at, value: 10 + i, subject: `${partner}-${tag}-${i}` })),
  );
  const res = await fetch(`${url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body,
  });
  expect(res.status, await res.text()).toBe(202);
}

async function get(path: string): Promise<{ status: number; type: string; text: string }> {
  const r = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${await token('acme', 'analyst')}` } });
  return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
}

const rolledUp = () =>
  expect.poll(() => app.reader.rollups?.current, { timeout: timeout(60_000), interval: 50 }).toBe(true);

/** Proposes `change` of the demo agreement as acme and approves it as globex: the new version is active. */
async function change(edit: (doc: any) => void): Promise<void> {
  const doc = YAML.parse(readFileSync(demoAgreementFile(), 'utf8'));
  edit(doc);
  const call = async (path: string, partner: string, body: unknown) => {
    const r = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await token(partner, 'admin')}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return (await r.json()) as any;
  };
  const made = await call('/v1/agreement/proposals', 'acme', { document: doc, reason: 'a test of snapshots' });
  expect(made.id, JSON.stringify(made)).toBeTypeOf('string');
  expect(await call(`/v1/agreement/proposals/${made.id}/approve`, 'globex', {})).toMatchObject({ state: 'active' });
}

/** Every surface that takes `?snapshot=`, at snapshot `s`. */
const surfaces = (s: number) => [
  `/v1/kpis/lead_time/series?grain=day&from=2026-11-18&to=2026-11-21&snapshot=${s}`,
  `/v1/kpis/lead_time/series?grain=week&from=2026-11-01&to=2026-11-30&by=partner&snapshot=${s}`,
  `/v1/kpis/lead_time/bands?from=2026-11-01&to=2026-11-30&snapshot=${s}`,
  `/v1/breaches?from=2026-11-01&to=2026-11-30&snapshot=${s}`,
  `/v1/kpis?snapshot=${s}`,
  `/v1/goals?snapshot=${s}`,
];

/** The agreement-version receipts in the store's batches: the snapshots versions took. */
async function versionSnapshots(): Promise<{ snapshot: number; partner: string; accepted: number; errors: string }[]> {
  const c = await room.duck.connect();
  try {
    return (
      await c.runAndReadAll(
        "SELECT snapshot::INTEGER AS snapshot, partner, accepted::INTEGER AS accepted, errors FROM batches WHERE content_type = 'agreement' ORDER BY snapshot",
      )
    ).getRowObjectsJson() as any;
  } finally {
    room.duck.release(c);
  }
}

async function expectRefused(s: number, version: number, since: number): Promise<void> {
  for (const path of surfaces(s)) {
    const r = await get(path);
    expect(r.status, `${path}: ${r.text}`).toBe(400);
    expect(r.type).toMatch(/^application\/problem\+json/);
    const body = JSON.parse(r.text);
    expect(body.field, path).toBe('querystring.snapshot');
    expect(body.detail, path).toContain(`version ${version} is in force from snapshot ${since}`);
  }
}

describe('a new agreement version is a snapshot of its own', () => {
  it('a new time zone: the snapshots before it are refused on every surface, the new one answers on the new days, the same bytes after a restart', async () => {
    // 23:30 UTC on 19 November is 00:30 on the 20th in Berlin (the demo's zone).
    for (const partner of ['acme', 'globex']) await push(partner, '2026-11-19T23:30:00Z', 12, 'TZ');
    await rolledUp();
    const s = room.duck.snapshots.latest;
    const before = await Promise.all(surfaces(s).map(get));
    for (const r of before) expect(r.status, r.text).toBe(200);
    expect(JSON.parse(before[0]!.text)).toMatchObject({ agreementVersion: 1, cells: [{ period: '2026-11-20' }] });

    await change((doc) => (doc.partnership.timezone = 'UTC'));
    const taken = s + 1;
    expect(room.duck.snapshots.latest).toBe(taken);
    expect(room.duck.agreementInForce).toEqual({ version: 2, since: taken });
    expect(await versionSnapshots()).toEqual([
      { snapshot: taken, partner: '(room)', accepted: 0, errors: JSON.stringify({ version: 2 }) },
    ]);
    await expectRefused(s, 2, taken);

    // The latest read without ?snapshot= and the new snapshot asked for: version 2, the 19th
    // (withheld from then on: released points moved into it, docs/privacy.md §3).
    const now = await get('/v1/kpis/lead_time/series?grain=day&from=2026-11-18&to=2026-11-21');
    const after = await Promise.all(surfaces(taken).map(get));
    for (const r of after) expect(r.status, r.text).toBe(200);
    expect(JSON.parse(after[0]!.text)).toMatchObject({
      snapshot: taken,
      agreementVersion: 2,
      cells: [{ period: '2026-11-19', value: null, reasonCode: 'zone' }],
    });
    expect(now.text).toBe(after[0]!.text);
    await rolledUp();
    expect((await Promise.all(surfaces(taken).map(get))).map((r) => r.text)).toEqual(after.map((r) => r.text));

    // A restart keeps both: the refusal, and the new snapshot's bytes.
    await shut();
    await open();
    expect(room.duck.snapshots.latest).toBe(taken);
    await expectRefused(s, 2, taken);
    await rolledUp();
    expect((await Promise.all(surfaces(taken).map(get))).map((r) => r.text)).toEqual(after.map((r) => r.text));
  });

  it('a change of rules alone is a snapshot too: no snapshot is answered under two versions', async () => {
    for (const partner of ['acme', 'globex']) await push(partner, '2026-11-18T10:00:00Z', 6, 'K');
    await rolledUp();
    const s = room.duck.snapshots.latest;
    const week = `/v1/kpis/lead_time/series?grain=week&from=2026-11-16&to=2026-11-22&by=partner`;
    const old = JSON.parse((await get(week)).text);
    expect(old).toMatchObject({ snapshot: s, agreementVersion: 1, minGroupSize: 5 });
    expect(old.cells.map((c: { state: string }) => c.state)).toEqual(['ok', 'ok']);

    // k of lead_time from 5 to 8: each partner's 6 orders are too few now.
    await change((doc) => (doc.kpis.find((k: { id: string }) => k.id === 'lead_time').minGroupSize = 8));
    expect(room.duck.snapshots.latest).toBe(s + 1);
    await expectRefused(s, 2, s + 1);
    const now = JSON.parse((await get(week)).text);
    expect(now).toMatchObject({ snapshot: s + 1, agreementVersion: 2, minGroupSize: 8 });
    expect(now.cells.map((c: { state: string }) => c.state)).toEqual(['suppressed', 'suppressed']);

    // A second change: one more snapshot, and the first change's snapshot is refused too.
    await change((doc) => (doc.kpis.find((k: { id: string }) => k.id === 'lead_time').minGroupSize = 6));
    expect(room.duck.snapshots.latest).toBe(s + 2);
    await expectRefused(s + 1, 3, s + 2);
    expect(JSON.parse((await get(week)).text)).toMatchObject({ snapshot: s + 2, agreementVersion: 3, minGroupSize: 6 });
    expect((await versionSnapshots()).map((r) => r.snapshot)).toEqual([s + 1, s + 2]);
  });

  it('while the new version waits for the writers, readers keep the old version at the old snapshot; batches that waited land under the new one', async () => {
    for (const partner of ['acme', 'globex']) await push(partner, '2026-11-19T23:30:00Z', 12, 'W');
    await rolledUp();
    const s = room.duck.snapshots.latest;
    const day = '/v1/kpis/lead_time/series?grain=day&from=2026-11-18&to=2026-11-21';
    const old = await get(day);
    const slots = room.duck.slots;
    const held: (() => void)[] = [];
    for (let i = 0; i < slots.size; i++) held.push(await slots.acquire());
    const changed = change((doc) => (doc.partnership.timezone = 'UTC'));
    await expect.poll(() => slots.readyWaiting, { timeout: timeout(20_000), interval: 20 }).toBe(1);
    const waiting = push('acme', '2026-11-19T23:30:00Z', 6, 'LATE');
    await expect.poll(() => slots.readyWaiting, { timeout: timeout(20_000), interval: 20 }).toBe(2);
    // The version is active in the control plane, not yet in force: the old bytes, the old snapshot.
    expect((await get(day)).text).toBe(old.text);
    expect((await get(`${day}&snapshot=${s}`)).text).toBe(old.text);
    expect(room.agreement().version).toBe(1);
    for (const release of held) release();
    await Promise.all([changed, waiting]);
    // The version took s + 1; the batch that waited, s + 2, on the new days.
    expect(room.duck.agreementInForce).toEqual({ version: 2, since: s + 1 });
    expect(room.duck.snapshots.latest).toBe(s + 2);
    const c = await room.duck.connect();
    try {
      const rows = (
        await c.runAndReadAll(
          'SELECT snapshot::INTEGER AS snapshot, local_day::VARCHAR AS day, count(*)::INTEGER AS n FROM points GROUP BY ALL ORDER BY ALL',
        )
      ).getRowObjectsJson();
      expect(rows).toEqual([
        { snapshot: s - 1, day: '2026-11-19', n: 12 },
        { snapshot: s, day: '2026-11-19', n: 12 },
        { snapshot: s + 2, day: '2026-11-19', n: 6 },
      ]);
    } finally {
      room.duck.release(c);
    }
    expect(JSON.parse((await get(`${day}&snapshot=${s + 1}`)).text)).toMatchObject({ agreementVersion: 2 });
  });

  for (const kind of [
    'a version the store never took',
    'a store from before versions took snapshots, its points on another zone',
  ]) {
    it(`${kind}: the version is taken as a snapshot at the next start`, async () => {
      for (const partner of ['acme', 'globex']) await push(partner, '2026-11-19T23:30:00Z', 12, 'R');
      await change((doc) => (doc.partnership.timezone = 'UTC'));
      const s = room.duck.snapshots.latest;
      // As if the room had stopped between the control plane's commit and the store's snapshot
      // (the store says version 1), or had run code from before the setting: on Berlin days.
      await shut();
      const instance = await DuckDBInstance.create(join(dataDir, 'points.duckdb'));
      const c = await instance.connect();
      await c.run(
        `${
          kind.startsWith('a version')
            ? `UPDATE room_settings SET value = '{"version":1,"since":0}' WHERE key = 'agreement_in_force'`
            : `DELETE FROM room_settings WHERE key = 'agreement_in_force'`
        };
         UPDATE room_settings SET value = 'Europe/Berlin' WHERE key = 'timezone';
         UPDATE points SET local_day = timezone('Europe/Berlin', ts)::DATE;`,
      );
      c.closeSync();
      instance.closeSync();
      await open();
      expect(room.agreement().version).toBe(2);
      expect(room.duck.snapshots.latest).toBe(s + 1);
      expect(room.duck.agreementInForce).toEqual({ version: 2, since: s + 1 });
      await expectRefused(s, 2, s + 1);
      expect(
        JSON.parse((await get('/v1/kpis/lead_time/series?grain=day&from=2026-11-18&to=2026-11-21')).text),
      ).toMatchObject({ snapshot: s + 1, agreementVersion: 2, cells: [{ period: '2026-11-19' }] });
    });
  }

  it('a version the store never took that adds a grain back: at the next start, its periods over earlier points are withheld', async () => {
    for (const partner of ['acme', 'globex']) await push(partner, '2026-11-19T12:00:00Z', 12, 'G');
    await change((doc) => (doc.kpis.find((k: { id: string }) => k.id === 'lead_time').grains = ['week', 'month']));
    const v2 = room.duck.agreementInForce!;
    await change(() => undefined); // the demo as it is: days back
    // As if the room had stopped before the store took version 3: it answered under version 2.
    await shut();
    const instance = await DuckDBInstance.create(join(dataDir, 'points.duckdb'));
    const c = await instance.connect();
    await c.run(
      `UPDATE room_settings SET value = '${JSON.stringify(v2)}' WHERE key = 'agreement_in_force';
       DELETE FROM withheld_periods;`,
    );
    c.closeSync();
    instance.closeSync();
    await open();
    expect(room.agreement().version).toBe(v2.version + 1);
    const day = JSON.parse((await get('/v1/kpis/lead_time/series?grain=day&from=2026-11-19&to=2026-11-19')).text);
    expect(day.cells).toEqual([
      expect.objectContaining({ period: '2026-11-19', state: 'suppressed', reasonCode: 'version' }),
    ]);
    // The week and month were served under version 2 as they are now.
    const week = JSON.parse((await get('/v1/kpis/lead_time/series?grain=week&from=2026-11-16&to=2026-11-22')).text);
    expect(week.cells).toEqual([expect.objectContaining({ period: '2026-11-16', state: 'ok' })]);
  });

  it('a store from before versions took snapshots, on the zone in force, records the version without a snapshot', async () => {
    for (const partner of ['acme', 'globex']) await push(partner, '2026-11-19T23:30:00Z', 12, 'O');
    const s = room.duck.snapshots.latest;
    const before = await get(surfaces(s)[0]!);
    await shut();
    const instance = await DuckDBInstance.create(join(dataDir, 'points.duckdb'));
    const c = await instance.connect();
    await c.run("DELETE FROM room_settings WHERE key = 'agreement_in_force'");
    c.closeSync();
    instance.closeSync();
    await open();
    expect(room.duck.snapshots.latest).toBe(s);
    expect(room.duck.agreementInForce).toEqual({ version: 1, since: 0 });
    expect((await get(surfaces(s)[0]!)).text).toBe(before.text);
  });
});
