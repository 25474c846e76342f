import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import { loadConfig } from '../../services/platform/config.js';
import { demoAgreementFile } from '../../services/platform/paths.js';
import { openRoom } from '../../assembly/open-room.js';
import { leadTimePoints, ndjson } from '../helpers/points.js';
import { spawnRoom } from '../helpers/spawn-room.js';
import { freshControlDb } from '../helpers/test-room.js';
import { byDepth } from '../helpers/depth.js';
import { timeout } from '../helpers/timeouts.js';

const ROUNDS = byDepth(4, 12);
const BATCH_POINTS = 300;
vi.setConfig({ testTimeout: timeout(600_000) });

let dataDir: string;
let db: Awaited<ReturnType<typeof freshControlDb>>;
let env: Record<string, string>;
let token: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'parity-crash-'));
  db = await freshControlDb(dataDir);
  env = {
    PARITY_DATA_DIR: dataDir,
    PARITY_AGREEMENT: demoAgreementFile(),
    ...(db.url ? { DATABASE_URL: db.url } : {}),
  };
  const room = await openRoom(loadConfig(env));
  token = (await createToken(room.control.db, { partnerId: 'acme', role: 'ingest', name: 'crash' }, new Date())).token;
  await room.close();
});
afterAll(async () => {
  await db?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Sent {
  key: string;
  body: string;
  receipt?: { batchId: string; snapshot: number; accepted: number };
}

describe('SIGKILL while batches stream in', () => {
  it(`every acknowledged batch is present exactly once and no batch is half-present (${ROUNDS} rounds)`, async () => {
    const sent: Sent[] = [];
    let seq = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const room = await spawnRoom(env);
      let stop = false;
      const pusher = async () => {
        while (!stop) {
          const n = seq++;
          const s: Sent = { key: `crash-${n}`, body: ndjson(leadTimePoints(BATCH_POINTS, `C${n}`)) };
          sent.push(s);
          try {
            const res = await fetch(`${room.url}/v1/points`, {
              method: 'POST',
              headers: {
                authorization: `Bearer ${token}`,
                'content-type': 'application/x-ndjson',
                'idempotency-key': s.key,
              },
              body: s.body,
            });
            if (res.status === 202 || res.status === 200) s.receipt = (await res.json()) as Sent['receipt'];
            else await res.text();
          } catch {
            return; // the server died under us
          }
        }
      };
      const pushers = [pusher(), pusher(), pusher()];
      await new Promise((r) => setTimeout(r, 150 + Math.floor(Math.random() * 900)));
      room.child.kill('SIGKILL');
      stop = true;
      await room.exited;
      await Promise.all(pushers);
    }
    // After the last crash: retry every unacknowledged batch with its key, as a client would.
    const room = await spawnRoom(env);
    for (const s of sent.filter((x) => !x.receipt).slice(0, 20)) {
      const res = await fetch(`${room.url}/v1/points`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson', 'idempotency-key': s.key },
        body: s.body,
      });
      expect([200, 202]).toContain(res.status);
      s.receipt = (await res.json()) as Sent['receipt'];
    }
    room.child.kill('SIGTERM');
    expect(await room.exited).toBe(0);

    const acknowledged = sent.filter((s) => s.receipt);
    expect(acknowledged.length).toBeGreaterThan(ROUNDS);
    const duck = await DuckDBInstance.create(join(dataDir, 'points.duckdb'));
    const c = await duck.connect();
    const batches = (
      await c.runAndReadAll(
        'SELECT b.id, b.snapshot, b.idempotency_key AS key, b.accepted, (SELECT count(*) FROM points p WHERE p.snapshot = b.snapshot)::INTEGER AS n FROM batches b',
      )
    ).getRowObjectsJson();
    const orphans = Number(
      (
        await c.runAndReadAll(
          'SELECT count(*)::INTEGER AS n FROM points WHERE snapshot NOT IN (SELECT snapshot FROM batches)',
        )
      ).getRowObjects()[0]!['n'],
    );
    c.closeSync();
    duck.closeSync();
    expect(orphans).toBe(0);
    for (const b of batches) expect(b['n'], `batch ${b['id']} half-present`).toBe(b['accepted']);
    const byKey = new Map(batches.map((b) => [String(b['key']), b]));
    expect(byKey.size).toBe(batches.length);
    for (const s of acknowledged) {
      const b = byKey.get(s.key);
      expect(b, `acknowledged batch ${s.key} missing`).toBeDefined();
      expect(String(b!['id'])).toBe(s.receipt!.batchId);
      expect(b!['n']).toBe(BATCH_POINTS);
    }
  });
});
