// Fair ingest with a single writer (a budget under 512 MiB, as the demo's): a batch whose client
// is still sending holds no writer another partner's ready batch could use. A streaming batch
// whose client goes quiet gives the writer up and lands later, whole, from disk; a batch that
// arrives while the writer is busy reads its body to disk before it asks for the writer, so a
// later batch that is ready goes first. Everything through a listening server, with raw sockets
// that pause where a client on a poor line (or a hostile one) would.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

let t: TestRoom;
beforeAll(async () => {
  t = await startTestRoom({
    env: {
      PARITY_ALERTS: 'off',
      PARITY_INGEST_CONCURRENCY: '1',
      PARITY_INGEST_QUEUE: '4',
      // A legal pace for the pauses below: 200 bytes a second over 30 s.
      PARITY_INGEST_MIN_RATE: '200',
      PARITY_INGEST_RATE_WINDOW_SECONDS: '30',
      // What one partner's bodies may hold on disk at once (the last case fills it).
      PARITY_INGEST_SPOOL: '64kb',
    },
  });
});
afterAll(async () => t?.close());

const lines = (prefix: string, n: number, value = 5) =>
  Array.from(
    { length: n },
    (_, i) => `${JSON.stringify({ kpi: 'lead_time', at: '2026-11-20T10:00:00Z', value, subject: `${prefix}-${i}` })}\n`,
  ).join('');

interface Upload {
  send(text: string): void;
  end(): void;
  open(): boolean;
  answer: Promise<{ status: number; body: Record<string, unknown> }>;
}

/** A chunked NDJSON upload on its own connection, sent piece by piece as the test says. */
function upload(token: string): Upload {
  const { port } = new URL(t.url);
  const socket: Socket = connect(Number(port), '127.0.0.1');
  socket.setEncoding('utf8');
  let data = '';
  const answer = new Promise<{ status: number; body: Record<string, unknown> }>((resolve) => {
    socket.on('data', (d: string) => (data += d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      const body = rest.join('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
        body: body ? (JSON.parse(body) as Record<string, unknown>) : {},
      });
    });
  });
  socket.write(
    [
      'POST /v1/points HTTP/1.1',
      'Host: 127.0.0.1',
      'Connection: close',
      `Authorization: Bearer ${token}`,
      'Content-Type: application/x-ndjson',
      'Transfer-Encoding: chunked',
      '',
      '',
    ].join('\r\n'),
  );
  return {
    send: (text) => socket.write(`${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`),
    end: () => socket.write('0\r\n\r\n'),
    open: () => !socket.destroyed && data === '',
    answer,
  };
}

/** An upload that takes the one writer (streaming `n` points) and then goes quiet. */
async function holdWriter(token: string, prefix: string, n: number): Promise<Upload> {
  const holder = upload(token);
  holder.send(lines(prefix, n));
  await expect.poll(() => t.room.duck.slots.busy, { timeout: timeout(20_000), interval: 10 }).toBe(1);
  return holder;
}

async function push(token: string, body: string) {
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body,
    signal: AbortSignal.timeout(timeout(30_000)),
  });
  return { status: res.status, body: (await res.json()) as { snapshot: number; accepted: number } };
}

async function landed(checksum: string): Promise<{ n: number; subjects: number }> {
  const c = await t.room.duck.connect();
  try {
    // Subjects are pseudonymised: count the distinct pseudonyms among the batch's points.
    const [row] = (
      await c.runAndReadAll(
        `SELECT count(*)::INTEGER AS n, count(DISTINCT subject)::INTEGER AS subjects FROM points
         WHERE snapshot IN (SELECT snapshot FROM batches WHERE checksum = '${checksum}')`,
      )
    ).getRowObjectsJson() as unknown as { n: number; subjects: number }[];
    return row!;
  } finally {
    t.room.duck.release(c);
  }
}

async function yields(): Promise<number> {
  const text = await t.metrics();
  return Number(/^parity_ingest_writer_yields_total (\d+)$/m.exec(text)?.[1]);
}

const spoolFiles = () => {
  try {
    return readdirSync(join(t.dataDir, 'spool'));
  } catch {
    return [];
  }
};

describe('one ingest writer', () => {
  it(
    "a streaming batch whose client goes quiet gives the writer to another partner's ready batch, then lands whole from disk",
    async () => {
      const acme = await t.token('acme', 'ingest');
      const globex = await t.token('globex', 'ingest');
      const before = await yields();
      // acme streams on the one writer, then its client goes quiet.
      const slow = await holdWriter(acme, 'A', 300);
      const quick = await push(globex, lines('G', 1));
      expect(quick.status).toBe(202);
      expect(quick.body.accepted).toBe(1);
      // Landed while acme's upload was still open, unanswered.
      expect(slow.open()).toBe(true);
      expect(await yields()).toBe(before + 1);
      // Its body waits on disk, as ciphertext: no raw subject reaches a file (invariant 3).
      const waitingOnDisk = spoolFiles().filter((f) => f.endsWith('.body'));
      expect(waitingOnDisk).toHaveLength(1);
      const bytes = readFileSync(join(t.dataDir, 'spool', waitingOnDisk[0]!));
      expect(bytes.length).toBeGreaterThan(1000);
      // Patterns long enough that ciphertext cannot hold them by chance (a short one such as A-\d
      // turns up in 30 kB of noise about once in fifty runs).
      expect(bytes.toString('latin1')).not.toMatch(/"subject":"A-|"kpi":"lead_time"|2026-11-20T10/);
      // acme's client comes back; its batch lands from disk with every point it sent.
      slow.send(lines('B', 200));
      slow.end();
      const answer = await slow.answer;
      expect(answer.status, JSON.stringify(answer.body)).toBe(202);
      expect(answer.body).toMatchObject({ accepted: 500, rejected: 0 });
      expect(answer.body['snapshot']).toBeGreaterThan(quick.body.snapshot);
      expect(await landed(answer.body['checksum'] as string)).toEqual({ n: 500, subjects: 500 });
      // The same body sent in one go lands with the same checksum: nothing lost, doubled or reordered.
      const whole = await push(acme, lines('A', 300) + lines('B', 200));
      expect(whole.status).toBe(202);
      expect((whole.body as unknown as { checksum: string }).checksum).toBe(answer.body['checksum']);
      expect(spoolFiles()).toEqual([]);
      expect(t.logs.join('')).not.toMatch(/"level":50/);
    },
    timeout(90_000),
  );

  it(
    'a batch still being sent holds no place at the head: a later batch that is ready lands first',
    async () => {
      const acme = await t.token('acme', 'ingest');
      const globex = await t.token('globex', 'ingest');
      // acme holds the writer, streaming, and goes quiet.
      const holder = await holdWriter(acme, 'H', 100);
      // globex arrives while the writer is busy: it queues and reads its body to disk, slowly.
      const waiting = upload(globex);
      waiting.send(lines('W', 50));
      await expect.poll(() => t.room.duck.slots.waiting, { timeout: timeout(20_000), interval: 10 }).toBe(1);
      // acme's quiet holder keeps the writer while nobody is ready for it.
      await new Promise((r) => setTimeout(r, 1500));
      expect([t.room.duck.slots.busy, t.room.duck.slots.readyWaiting]).toEqual([1, 0]);
      // A ready batch comes: the quiet holder gives the writer to it, not to globex's unfinished one.
      const quick = await push(acme, lines('Q', 2));
      expect(quick.status).toBe(202);
      expect([holder.open(), waiting.open()]).toEqual([true, true]);
      waiting.send(lines('X', 10));
      waiting.end();
      const w = await waiting.answer;
      expect(w.status, JSON.stringify(w.body)).toBe(202);
      expect(w.body).toMatchObject({ accepted: 60 });
      expect(w.body['snapshot']).toBeGreaterThan(quick.body.snapshot);
      holder.end();
      const h = await holder.answer;
      expect(h.status, JSON.stringify(h.body)).toBe(202);
      expect(h.body).toMatchObject({ accepted: 100 });
      expect(spoolFiles()).toEqual([]);
    },
    timeout(90_000),
  );

  it(
    'a batch that gave the writer up and then turns out invalid lands nothing, and its body is gone from disk',
    async () => {
      const acme = await t.token('acme', 'ingest');
      const globex = await t.token('globex', 'ingest');
      const before = await yields();
      const latest = t.room.duck.snapshots.latest;
      const slow = await holdWriter(acme, 'V', 100);
      expect((await push(globex, lines('G2', 1))).status).toBe(202);
      expect(await yields()).toBe(before + 1);
      // The rest holds a value out of the agreed range: the whole batch is refused.
      slow.send(lines('V2', 5, -1e9));
      slow.end();
      const answer = await slow.answer;
      expect(answer.status, JSON.stringify(answer.body)).toBe(422);
      expect(answer.body).toMatchObject({ rejected: 5, field: 'value' });
      expect(t.room.duck.snapshots.latest).toBe(latest + 1);
      expect(spoolFiles()).toEqual([]);
    },
    timeout(90_000),
  );

  it(
    "a partner's bodies waiting for the writer stop at its spool budget with a 429; the others, and other partners, are not touched",
    async () => {
      const acme = await t.token('acme', 'ingest');
      const globex = await t.token('globex', 'ingest');
      const holder = await holdWriter(acme, 'S', 10);
      // globex's first waiting body takes 38 kB of its 64 KiB, its second (31 kB) would pass it.
      const first = upload(globex);
      first.send(lines('W1', 500));
      await expect.poll(() => t.room.duck.slots.waiting, { timeout: timeout(20_000), interval: 10 }).toBe(1);
      const second = upload(globex);
      second.send(lines('W2', 400));
      const refused = await second.answer;
      expect(refused.status, JSON.stringify(refused.body)).toBe(429);
      expect(refused.body).toMatchObject({ field: 'body', detail: expect.stringContaining('PARITY_INGEST_SPOOL') });
      // The first is untouched: it ends, takes the writer from the quiet holder and lands whole.
      first.end();
      expect(await first.answer).toMatchObject({ status: 202, body: { accepted: 500 } });
      holder.end();
      expect(await holder.answer).toMatchObject({ status: 202, body: { accepted: 10 } });
      // Its bytes were given back: 54 kB waits again without a word.
      const again = await holdWriter(acme, 'S2', 5);
      const third = upload(globex);
      third.send(lines('W3', 700));
      await new Promise((r) => setTimeout(r, 300));
      expect(third.open()).toBe(true);
      third.end();
      again.end();
      expect((await third.answer).status).toBe(202);
      expect((await again.answer).status).toBe(202);
      expect(spoolFiles()).toEqual([]);
    },
    timeout(90_000),
  );

  it(
    'a steady trickle that is never quiet for a second gives the writer up too, once it has held it mostly waiting',
    async () => {
      const acme = await t.token('acme', 'ingest');
      const globex = await t.token('globex', 'ingest');
      const before = await yields();
      const trickle = await holdWriter(acme, 'T', 20);
      // A few points every 300 ms: never a quiet second, always waiting on the client.
      let n = 0;
      const timer = setInterval(() => trickle.send(lines(`T${n++}`, 3)), 300);
      try {
        const quick = await push(globex, lines('G3', 1));
        expect(quick.status).toBe(202);
        expect(trickle.open()).toBe(true);
        expect(await yields()).toBe(before + 1);
      } finally {
        clearInterval(timer);
      }
      trickle.end();
      const answer = await trickle.answer;
      expect(answer.status, JSON.stringify(answer.body)).toBe(202);
      expect(answer.body).toMatchObject({ accepted: 20 + 3 * n, rejected: 0 });
      expect(spoolFiles()).toEqual([]);
    },
    timeout(90_000),
  );
});
