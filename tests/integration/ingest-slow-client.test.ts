// Issue #13, fair ingest through a listening server: one partner's slow uploads (a large declared
// Content-Length, one line now and then) no longer lock the other partner out. The other's
// one-line push lands while they trickle; the slow ones are cut off with 408 (or refused with 429
// once the partner's share of the queue is full), nothing of them lands, and the room stays up.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

let t: TestRoom;
beforeAll(async () => {
  t = await startTestRoom({
    env: {
      PARITY_ALERTS: 'off',
      PARITY_INGEST_CONCURRENCY: '2',
      PARITY_INGEST_QUEUE: '4',
      PARITY_INGEST_MIN_RATE: '64kb',
      // Long enough that the other partner's push, on a loaded two-core machine, lands while the
      // slow uploads still hold their places (with 2 s a CI run saw every one cut first).
      PARITY_INGEST_RATE_WINDOW_SECONDS: String(Math.min(600, Math.ceil(timeout(6_000) / 1000))), // the config's maximum
    },
  });
});
afterAll(async () => t?.close());

const line = (subject: string) =>
  `${JSON.stringify({ kpi: 'lead_time', at: '2026-11-20T10:00:00Z', value: 5, subject })}\n`;

interface Slow {
  socket: Socket;
  answer: Promise<{ status: number; body: string }>;
  timer: NodeJS.Timeout;
}

/** An upload that declares 10 MB and sends one line every 300 ms. */
function slowUpload(token: string, i: number): Slow {
  const { port } = new URL(t.url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.setEncoding('utf8');
  let data = '';
  let n = 0;
  // Lines only once the headers are out (written below, before the first tick).
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write(line(`SLOW-${i}-${n++}`));
  }, 300);
  const answer = new Promise<{ status: number; body: string }>((resolve) => {
    socket.on('data', (d: string) => (data += d));
    const done = () => {
      clearInterval(timer);
      const [head = '', ...rest] = data.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), body: rest.join('\r\n\r\n') });
    };
    socket.on('close', done);
    socket.on('error', () => undefined);
  });
  socket.write(
    [
      'POST /v1/points HTTP/1.1',
      'Host: 127.0.0.1',
      `Authorization: Bearer ${token}`,
      'Content-Type: application/x-ndjson',
      'Content-Length: 10000000',
      '',
      '',
    ].join('\r\n'),
  );
  return { socket, answer, timer };
}

describe('a partner trickling uploads', () => {
  it(
    "does not stop another partner's push; the slow uploads get 408 or 429 and land nothing",
    async () => {
      const slowToken = await t.token('acme', 'ingest');
      const fastToken = await t.token('globex', 'ingest'); // made before the slow uploads' window starts
      const slow = Array.from({ length: 8 }, (_, i) => slowUpload(slowToken, i));
      // Let them take what they can: acme's share of the writers and of the queue (one and two).
      await expect
        .poll(() => [t.room.duck.slots.busy, t.room.duck.slots.waiting], { timeout: timeout(20_000), interval: 10 })
        .toEqual([1, 2]);
      const before = t.room.duck.snapshots.latest;
      const sent = Date.now();
      const push = await fetch(`${t.url}/v1/points`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${fastToken}`,
          'content-type': 'application/x-ndjson',
        },
        body: line('FAST-1'),
        signal: AbortSignal.timeout(timeout(20_000)),
      });
      expect(push.status, await push.clone().text()).toBe(202);
      const receipt = (await push.json()) as { snapshot: number; accepted: number };
      expect(receipt.accepted).toBe(1);
      expect(receipt.snapshot).toBeGreaterThan(before);
      // Landed while slow uploads were still open (not answered yet).
      const open = slow.filter((s) => !s.socket.destroyed && s.socket.readyState === 'open').length;
      expect(open, `the push took ${Date.now() - sent} ms`).toBeGreaterThan(0);
      // And readable at once: a slow upload takes its snapshot number only when its body is in.
      expect(t.room.duck.snapshots.latest).toBeGreaterThanOrEqual(receipt.snapshot);
      const series = await fetch(`${t.url}/v1/kpis/lead_time/series?grain=week`, {
        headers: { authorization: `Bearer ${await t.token('globex', 'analyst')}` },
      });
      expect(series.headers.get('x-parity-snapshot')).toBe(String(receipt.snapshot));

      const answers = await Promise.all(slow.map((s) => s.answer));
      const statuses = answers.map((a) => a.status).sort();
      // Each one: cut off for its pace, or refused at once because acme's share of the queue was full.
      for (const a of answers) expect([408, 429], a.body.slice(0, 200)).toContain(a.status);
      expect(statuses).toContain(408);
      expect(statuses).toContain(429);
      const cut = JSON.parse(answers.find((a) => a.status === 408)!.body);
      expect(cut).toMatchObject({ status: 408, field: 'body', detail: expect.stringContaining('KB/s') });
      // Nothing of acme's landed; globex's one point did.
      const c = await t.room.duck.connect();
      const rows = (
        await c.runAndReadAll(`SELECT partner, count(*)::INTEGER AS n FROM points GROUP BY partner ORDER BY partner`)
      ).getRowObjectsJson();
      t.room.duck.release(c);
      expect(rows).toEqual([{ partner: 'globex', n: 1 }]);
      // The writers are free again: acme lands at once.
      const again = await fetch(`${t.url}/v1/points`, {
        method: 'POST',
        headers: { authorization: `Bearer ${slowToken}`, 'content-type': 'application/x-ndjson' },
        body: line('A-1'),
      });
      expect(again.status).toBe(202);
      expect(t.logs.join('')).not.toMatch(/"level":50/);
    },
    timeout(90_000),
  );
});
