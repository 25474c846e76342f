import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import { loadConfig } from '../../services/platform/config.js';
import { openRoom } from '../../assembly/open-room.js';
import { addPeriods, periodStart } from '../../services/platform/calendar.js';
import { localToday } from '../../services/platform/calendar.js';
import { ndjson } from '../helpers/points.js';
import { agreementWithHooks, HookReceiver } from '../helpers/receivers.js';
import { spawnRoom } from '../helpers/spawn-room.js';
import { freshControlDb } from '../helpers/test-room.js';

let dataDir: string;
let db: Awaited<ReturnType<typeof freshControlDb>>;
let env: Record<string, string>;
let token: string;
let receiver: HookReceiver;

beforeAll(async () => {
  receiver = await new HookReceiver().start();
  dataDir = mkdtempSync(join(tmpdir(), 'parity-alerts-crash-'));
  db = await freshControlDb(dataDir);
  env = {
    PARITY_DATA_DIR: dataDir,
    PARITY_AGREEMENT: agreementWithHooks(receiver),
    ...(db.url ? { DATABASE_URL: db.url } : {}),
  };
  const room = await openRoom(loadConfig(env));
  token = (await createToken(room.control.db, { partnerId: 'acme', role: 'ingest', name: 'crash' }, new Date())).token;
  await room.close();
});
afterAll(async () => {
  await receiver.close();
  await db?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('notifications survive a crash', () => {
  it('the room killed with SIGKILL while its webhooks are in flight delivers each of them after restart, nothing lost', async () => {
    // The spawned room runs on the real clock: breach lead_time in the last closed week.
    const lastWeek = addPeriods(periodStart(localToday(new Date(), 'Europe/Berlin'), 'week'), 'week', -1);
    const points = Array.from({ length: 10 }, (_, i) => ({
      kpi: 'lead_time',
      at: `${lastWeek}T${String(8 + i).padStart(2, '0')}:00:00Z`,
      value: 100,
      subject: `ORD-${i}`,
    }));
    receiver.mode = 'hang';
    let room = await spawnRoom(env);
    const res = await fetch(`${room.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(points),
    });
    expect(res.status).toBe(202);
    // Combined → /acme and /globex; acme's own figure → /acme: three messages, all held by the receiver.
    await receiver.waitFor(() => receiver.received.length >= 3, 30_000);
    const inFlight = new Set(receiver.received.map((h) => String(h.headers['webhook-id'])));
    expect(inFlight.size).toBe(3);
    room.child.kill('SIGKILL');
    await room.exited;
    receiver.dropHanging(); // the room is gone: nobody would hear an answer
    expect(receiver.delivered).toHaveLength(0);

    receiver.mode = 'ok';
    room = await spawnRoom(env);
    try {
      await receiver.waitFor(
        () => new Set(receiver.delivered.map((h) => String(h.headers['webhook-id']))).size >= 3,
        30_000,
      );
      // The same ids, each delivered (answered 2xx) exactly once.
      const delivered = receiver.delivered.map((h) => String(h.headers['webhook-id'])).sort();
      expect(delivered).toEqual([...inFlight].sort());
      // The restart opened no second incident: the outbox and incidents are as before the crash.
      await new Promise((r) => setTimeout(r, 500));
      const extra = receiver.received.filter((h) => !inFlight.has(String(h.headers['webhook-id'])));
      expect(extra.map((h) => h.body.slice(0, 400))).toEqual([]);
    } finally {
      room.child.kill('SIGTERM');
      expect(await room.exited).toBe(0);
    }
  });
});
