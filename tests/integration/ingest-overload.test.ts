import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOM_PARTNER } from '../../services/governance/retention.js';
import { createToken } from '../../services/governance/token-repository.js';
import { loadConfig } from '../../services/platform/config.js';
import { demoAgreementFile } from '../../services/platform/paths.js';
import { openRoom } from '../../assembly/open-room.js';
import { leadTimePoints, ndjson } from '../helpers/points.js';
import { spawnRoom } from '../helpers/spawn-room.js';
import { timeout } from '../helpers/timeouts.js';
import { freshControlDb, startTestRoom, type TestRoom } from '../helpers/test-room.js';

/** A request body the test releases by hand: the batch stays in flight until then. */
function heldBody(first: string) {
  let release!: (rest: string) => void;
  const rest = new Promise<string>((r) => (release = r));
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(new TextEncoder().encode(first));
      controller.enqueue(new TextEncoder().encode(await rest));
      controller.close();
    },
  });
  return { stream, release };
}

const post = (url: string, token: string, body: BodyInit, key?: string) =>
  fetch(`${url}/v1/points`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/x-ndjson',
      ...(key ? { 'idempotency-key': key } : {}),
    },
    body,
    duplex: 'half',
  } as RequestInit);

describe('a saturated writer', () => {
  let t: TestRoom;
  beforeAll(async () => {
    t = await startTestRoom({ env: { PARITY_INGEST_CONCURRENCY: '1', PARITY_INGEST_QUEUE: '0' } });
  });
  afterAll(async () => t?.close());

  it('answers 429 with Retry-After while every writer is busy, and lands again once free', async () => {
    const token = await t.token('acme', 'ingest');
    const points = ndjson(leadTimePoints(20, 'HELD'));
    const held = heldBody(points.slice(0, 100));
    const slow = post(t.url, token, held.stream);
    // Wait until the held batch owns the only writer.
    await expect.poll(() => t.room.duck.slots.busy, { timeout: timeout(30_000), interval: 20 }).toBe(1);
    const refused = await post(t.url, token, ndjson(leadTimePoints(2, 'LATE')));
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    held.release(points.slice(100));
    expect((await slow).status).toBe(202);
    const retried = await post(t.url, token, ndjson(leadTimePoints(2, 'LATE')));
    expect(retried.status).toBe(202);
  });

  it('gives the writer back at the commit: the next batch lands while the last one waits for its release step, and retention waits for both steps', async () => {
    const token = await t.token('globex', 'ingest');
    const duck = t.room.duck;
    const batches = async () =>
      Number((await duck.query({ sql: 'SELECT count(*)::INTEGER AS n FROM batches', params: [] }))[0]!['n']);
    const before = await batches();
    // Every release step waits at the gate until the test opens it.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const releaser = duck.releaser;
    const stepsAt: number[] = [];
    duck.releaser = async (exec, snapshot, kpis) => {
      await gate;
      stepsAt.push(snapshot);
      return releaser(exec, snapshot, kpis);
    };
    try {
      const first = post(t.url, token, ndjson(leadTimePoints(30, 'GATE-A')));
      // Committed, its step held at the gate: the only writer slot is free again.
      await expect.poll(batches, { timeout: timeout(30_000), interval: 20 }).toBe(before + 1);
      await expect.poll(() => duck.slots.busy, { timeout: timeout(10_000), interval: 10 }).toBe(0);
      const a = duck.snapshots.next - 1;
      expect(duck.snapshots.latest).toBeLessThan(a);
      // With no queue, a batch that found the slot still held would be refused with 429 at once.
      const second = post(t.url, token, ndjson(leadTimePoints(30, 'GATE-B')));
      await expect.poll(batches, { timeout: timeout(30_000), interval: 20 }).toBe(before + 2);
      await expect.poll(() => duck.slots.busy, { timeout: timeout(10_000), interval: 10 }).toBe(0);
      // Retention takes every slot, then waits for the steps of what committed before it: it has
      // not reserved its snapshot while they are held.
      const retention = duck.retirePoints('2026-11-19', {
        id: 'retention-gate',
        partner: ROOM_PARTNER,
        at: new Date('2026-11-23T12:00:00Z'),
        agreementVersion: t.room.agreement().version,
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(duck.snapshots.next).toBe(a + 2);
      expect(duck.snapshots.latest).toBeLessThan(a);
      open();
      const [r1, r2, retired] = await Promise.all([first, second, retention]);
      expect([r1.status, r2.status]).toEqual([202, 202]);
      const [b1, b2] = [(await r1.json()) as { snapshot: number }, (await r2.json()) as { snapshot: number }];
      expect([b1.snapshot, b2.snapshot]).toEqual([a, a + 1]);
      expect(retired?.snapshot).toBe(a + 2);
      expect(retired!.deleted).toBeGreaterThan(0);
      // Both batches were settled before the deletion's own step.
      expect(stepsAt.indexOf(a + 2)).toBeGreaterThan(stepsAt.indexOf(a + 1));
      expect(stepsAt.indexOf(a + 1)).toBeGreaterThan(stepsAt.indexOf(a));
    } finally {
      open();
      duck.releaser = releaser;
    }
  });
});

describe('graceful shutdown', () => {
  let dataDir: string;
  let db: Awaited<ReturnType<typeof freshControlDb>>;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'parity-drain-'));
    db = await freshControlDb(dataDir);
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('SIGTERM lets an in-flight batch land, refuses new ones, checkpoints DuckDB and exits 0', async () => {
    const env = { PARITY_DATA_DIR: dataDir, PARITY_AGREEMENT: demoAgreementFile(), DATABASE_URL: db.url ?? '' };
    const setup = await openRoom(loadConfig(env));
    const token = (
      await createToken(setup.control.db, { partnerId: 'acme', role: 'ingest', name: 'drain' }, new Date())
    ).token;
    const operator = (
      await createToken(setup.control.db, { partnerId: null, role: 'operator', name: 'drain' }, new Date())
    ).token;
    await setup.close();

    const room = await spawnRoom(env);
    const points = ndjson(leadTimePoints(50, 'DRAIN'));
    const held = heldBody(points.slice(0, 200));
    const inFlight = post(room.url, token, held.stream, 'drain-1');
    // The held batch owns a writer before the signal, and the room is closing before the late post.
    await expect
      .poll(
        async () =>
          /^parity_ingest_writers_busy 1$/m.test(
            await (await fetch(`${room.url}/metrics`, { headers: { authorization: `Bearer ${operator}` } })).text(),
          ),
        {
          timeout: timeout(30_000),
          interval: 20,
        },
      )
      .toBe(true);
    room.child.kill('SIGTERM');
    await expect
      .poll(
        () =>
          fetch(`${room.url}/healthz`).then(
            (r) => r.status,
            () => 'refused',
          ),
        { timeout: timeout(30_000), interval: 20 },
      )
      .not.toBe(200);
    const late = await post(room.url, token, ndjson(leadTimePoints(1, 'AFTER'))).then(
      (r) => r.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(late);
    held.release(points.slice(200));
    const res = await inFlight;
    expect(res.status).toBe(202);
    const receipt = (await res.json()) as { snapshot: number; accepted: number };
    expect(receipt.accepted).toBe(50);
    expect(await room.exited).toBe(0);

    // After a clean stop everything is in the database file: the WAL was folded in.
    const again = await openRoom(loadConfig(env));
    try {
      expect(again.duck.snapshots.latest).toBe(receipt.snapshot);
      const c = await again.duck.connect();
      const n = (
        await c.runAndReadAll('SELECT count(*)::INTEGER AS n FROM points WHERE snapshot = $1', [receipt.snapshot])
      ).getRowObjects()[0]!['n'];
      again.duck.release(c);
      expect(n).toBe(50);
    } finally {
      await again.close();
    }
  });
});
