// Issue #13, fair ingest (and per-partner webhook secrets): the writer slots are shared between partners, and a body that trickles
// in is cut off. Both pieces on their own, with no room around them (the HTTP test is
// tests/integration/ingest-slow-client.test.ts).
import { describe, expect, it } from 'vitest';
import { WriterSaturated, WriterSlots } from '../../services/platform/duck-store.js';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { paced } from '../../services/ingest/body-pace.js';
import { SpooledBody } from '../../services/ingest/body-spool.js';
import { Problem } from '../../services/platform/errors.js';
import { failureOf } from '../helpers/failure-of.js';

const settle = () => new Promise((r) => setImmediate(r));

describe('writer slots shared fairly', () => {
  it('one partner holds at most all slots but one; the other gets the last at once', async () => {
    const slots = new WriterSlots(4, 8);
    const a = await Promise.all([slots.acquire('a'), slots.acquire('a'), slots.acquire('a')]);
    let fourth = false;
    const waitingA = slots.acquire('a').then((r) => ((fourth = true), r));
    await settle();
    expect(fourth).toBe(false); // a free slot, but a is at its cap
    expect(slots.busy).toBe(3);
    const b = await slots.acquire('b'); // not queued behind a
    expect(slots.held('b')).toBe(1);
    // Released by a: b's next batch goes before a's waiting one (b holds fewer).
    const bNext = slots.acquire('b');
    a[0]!();
    await bNext;
    expect(fourth).toBe(false);
    b();
    await waitingA;
    expect(slots.held('a')).toBe(3);
  });

  it('a partner queues at most half the places; others still get theirs, then 429 for all', async () => {
    const slots = new WriterSlots(2, 4);
    await slots.acquire('a');
    await slots.acquire('b');
    const queuedA = [slots.acquire('a'), slots.acquire('a')];
    await expect(slots.acquire('a')).rejects.toBeInstanceOf(WriterSaturated);
    const queuedB = [slots.acquire('b'), slots.acquire('b')];
    await expect(slots.acquire('c')).rejects.toBeInstanceOf(WriterSaturated);
    expect(slots.waiting).toBe(4);
    void queuedA;
    void queuedB;
  });

  it("the room's own waiting work (no owner) goes ahead of the partners' waiting batches", async () => {
    const slots = new WriterSlots(2, 4);
    const a = await slots.acquire('a');
    const b = await slots.acquire('b');
    const order: string[] = [];
    const laterA = slots.acquire('a').then((r) => (order.push('a'), r));
    const room = slots.acquire().then((r) => (order.push('room'), r));
    a(); // a holds none now and waited first, but the room's deletion goes first
    (await room)();
    (await laterA)();
    b();
    expect(order).toEqual(['room', 'a']);
  });

  it('a place taken before its body is in counts against the queue but gets no slot until it is ready', async () => {
    const slots = new WriterSlots(1, 4);
    const held = slots.tryAcquire('a')!;
    expect(slots.tryAcquire('b')).toBeUndefined();
    const reading = slots.enqueue('b'); // b's body is still arriving
    const second = slots.enqueue('b');
    // b's half of the queue is full while its bodies are read; a ready place is not needed for that.
    expect(() => slots.enqueue('b')).toThrow(WriterSaturated);
    expect([slots.waiting, slots.readyWaiting]).toEqual([2, 0]);
    second.cancel();
    expect(slots.waiting).toBe(1);
    // The slot comes free while b is still reading: nobody is ready, so it stays free for the next.
    held();
    await settle();
    expect(slots.busy).toBe(0);
    const c = slots.tryAcquire('c')!; // a ready newcomer takes it at once
    expect(c).toBeDefined();
    const order: string[] = [];
    const bTurn = reading.ready().then((r) => (order.push('b'), r));
    const aTurn = slots
      .enqueue('a')
      .ready()
      .then((r) => (order.push('a'), r));
    expect(slots.readyWaiting).toBe(2);
    // With places ready, a free slot goes to them, never to a newcomer.
    c();
    expect(slots.tryAcquire('d')).toBeUndefined();
    (await bTurn)();
    (await aTurn)();
    expect(order).toEqual(['b', 'a']);
    // A holder gives its slot up only to a ready waiter that could take it.
    const two = new WriterSlots(2, 4);
    const a1 = two.tryAcquire('a')!;
    const b1 = two.tryAcquire('b')!;
    const a2 = two.enqueue('a').ready(); // a is at its cap (one of two slots)
    expect(two.readyWaiting).toBe(1);
    expect(two.wouldServe('b')).toBe(false); // b's slot would stay free: a may not take it
    expect(two.wouldServe('a')).toBe(true); // a's own would go to a's next batch
    // A free slot beside a waiter its cap keeps out goes to a newcomer at once.
    const c1 = two.tryAcquire('c');
    expect(c1).toBeUndefined(); // none free yet: a and b hold both
    b1();
    expect(two.busy).toBe(1); // a's waiter may not take b's slot
    const c2 = two.tryAcquire('c')!;
    expect(c2).toBeDefined();
    a1();
    (await a2)();
    c2();
    // A forced place (a batch that gave its slot up) is taken even when the owner's share is full.
    slots.enqueue('e');
    slots.enqueue('e');
    expect(() => slots.enqueue('e')).toThrow(WriterSaturated);
    expect(() => slots.enqueue('e', true)).not.toThrow();
    expect(slots.waiting).toBe(3);
    // A full queue refuses every place asked without force; the room's own work asks with it
    // (acquire(): snapshot-tracker.test.ts holds that contract).
    slots.enqueue('f');
    expect(() => slots.enqueue('g')).toThrow(WriterSaturated);
    expect(() => slots.enqueue('')).toThrow(WriterSaturated);
    expect(slots.waiting).toBe(4);
  });
});

describe('a body kept on disk as it is read', () => {
  it('gives every chunk once, says idle while the client is quiet without losing the pending read, and replays the same bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spool-'));
    const chunks = [Buffer.from('first\n'), Buffer.from('second\n'), Buffer.from('third\n')];
    async function* body() {
      yield chunks[0]!;
      await new Promise((r) => setTimeout(r, 300));
      yield chunks[1]!;
      yield chunks[2]!;
    }
    const path = join(dir, 'b.body');
    const spooled = await SpooledBody.open(body(), path, 1024, () => new Error('too large'));
    expect(await spooled.next(50)).toEqual(chunks[0]);
    expect(await spooled.next(50)).toBe('idle');
    expect(await spooled.next(50)).toBe('idle');
    expect(await spooled.next()).toEqual(chunks[1]);
    // What reached the disk so far is ciphertext: none of the body's text is in the file.
    await spooled.next(); // the write of the second chunk was queued behind the first
    const onDisk = readFileSync(path);
    expect(onDisk.length).toBeGreaterThanOrEqual(6);
    expect(onDisk.toString('latin1')).not.toMatch(/first|second|third/);
    expect(() => spooled.replay()).toThrow(/not read to its end/);
    await spooled.rest();
    expect(spooled.bytes).toBe(19);
    expect(readFileSync(path).length).toBe(19);
    expect(readFileSync(path).toString('latin1')).not.toMatch(/first|second|third/);
    let replayed = Buffer.alloc(0);
    for await (const c of spooled.replay()) replayed = Buffer.concat([replayed, c as Buffer]);
    expect(replayed.toString()).toBe('first\nsecond\nthird\n');
    await spooled.close();
    expect(existsSync(path)).toBe(false);
    // Past the limit, reading stops with the caller's error.
    const big = await SpooledBody.open(body(), join(dir, 'c.body'), 10, () => new Error('too large'));
    await expect(big.rest()).rejects.toThrow('too large');
    await big.close();
    expect(readdirSync(dir)).toEqual([]);
    rmSync(dir, { recursive: true });
  });
});

/** A body that yields `chunks` with a pause before each. */
async function* trickle(chunks: number, bytes: number, pauseMs: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < chunks; i++) {
    await new Promise((r) => setTimeout(r, pauseMs));
    yield Buffer.alloc(bytes, 0x61);
  }
}

/**
 * A body of `chunks` chunks and the clock it is paced on, which moves `pauseMs` before each chunk
 * and nowhere else: the pace the client keeps, whatever the machine's timers do meanwhile.
 */
function onClientClock(
  chunks: number,
  bytes: number,
  pauseMs: number,
): { body: AsyncIterable<Buffer>; now: () => number } {
  let t = 0;
  async function* body() {
    for (let i = 0; i < chunks; i++) {
      await new Promise((r) => setImmediate(r));
      t += pauseMs;
      yield Buffer.alloc(bytes, 0x61);
    }
  }
  return { body: body(), now: () => t };
}

describe('an upload that trickles in', () => {
  const pace = { minBytesPerSecond: 10_000, windowMs: 400, maxMs: 5_000 };

  it('is cut off with a 408 once it runs below the rate over a window', async () => {
    const err = await failureOf(paced(trickle(50, 100, 50), pace));
    expect(err).toBeInstanceOf(Problem);
    expect(err).toMatchObject({ status: 408, extra: { field: 'body' } });
  });

  it('a client that sends nothing is cut off too', async () => {
    const silent: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<Buffer>>(() => {}) }),
    };
    const err = await failureOf(paced(silent, pace));
    expect(err).toMatchObject({ status: 408 });
  });

  it('a fast upload, a small one, and time the room spends on a chunk itself pass', async () => {
    // On the clock of the client's own pace: a busy machine's late timers cannot make it slow.
    let n = 0;
    const fast = onClientClock(40, 2_000, 5);
    for await (const c of paced(fast.body, pace, fast.now)) n += c.length;
    expect(n).toBe(80_000);
    n = 0;
    const small = onClientClock(1, 10, 1);
    for await (const c of paced(small.body, pace, small.now)) n += c.length;
    expect(n).toBe(10);
    // The same chunks every 500 ms, 4 KB/s, are cut off on that clock.
    const slow = onClientClock(40, 2_000, 500);
    const err = await failureOf(paced(slow.body, pace, slow.now));
    expect(err).toMatchObject({ status: 408 });
    // The consumer takes 600 ms per chunk: the client delivered at once, so it is not to blame.
    n = 0;
    for await (const c of paced(trickle(3, 5_000, 1), pace)) {
      await new Promise((r) => setTimeout(r, 600));
      n += c.length;
    }
    expect(n).toBe(15_000);
  });

  it('a body past the maximum time is cut off even at a good rate', async () => {
    const err = await failureOf(paced(trickle(100, 50_000, 20), { ...pace, maxMs: 500 }));
    expect(err).toMatchObject({ status: 408, detail: expect.stringContaining('longer than') });
  });
});

describe('webhook signing secrets', () => {
  it('are per partner: two partners given the same URL get different secrets, each stable', async () => {
    const { webhookSecret, signWebhook } = await import('../../services/alerts/notifier.js');
    const room = Buffer.alloc(32, 7);
    const url = 'https://hooks.example/shared';
    const a = webhookSecret(room, 'acme', url);
    const b = webhookSecret(room, 'globex', url);
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(a).not.toBe(b);
    expect(webhookSecret(room, 'acme', url)).toBe(a);
    // What one partner can sign with its secret does not pass as the other's.
    expect(signWebhook(a, 'msg_1', 1, '{}')).not.toBe(signWebhook(b, 'msg_1', 1, '{}'));
  });
});

describe('webhook secret rotation', () => {
  it('during the overlap a delivery verifies with the old secret and with the new; after it, only with the new', async () => {
    const { webhookSecretsNow, signatureHeader } = await import('../../services/alerts/notifier.js');
    const { Webhook } = await import('standardwebhooks');
    const room = Buffer.alloc(32, 9);
    const url = 'https://hooks.example/acme';
    const now = new Date('2026-11-23T12:00:00Z');
    const before = webhookSecretsNow(room, 'acme', url, undefined, now);
    expect(before.previous).toBeNull();
    const state = { generation: 1, previous_until: new Date(now.getTime() + 3_600_000) };
    const during = webhookSecretsNow(room, 'acme', url, state, now);
    expect(during.previous).toBe(before.current);
    expect(during.current).not.toBe(before.current);
    const body = '{"type":"incident.opened"}';
    const ts = Math.floor(Date.now() / 1000);
    const headers = (secrets: string[]) => ({
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(ts),
      'webhook-signature': signatureHeader(secrets, 'msg_1', ts, body),
    });
    const both = headers([during.current, during.previous!]);
    expect(() => new Webhook(before.current).verify(body, both)).not.toThrow();
    expect(() => new Webhook(during.current).verify(body, both)).not.toThrow();
    const after = webhookSecretsNow(room, 'acme', url, state, new Date(now.getTime() + 3_600_001));
    expect(after.previous).toBeNull();
    const onlyNew = headers([after.current]);
    expect(() => new Webhook(after.current).verify(body, onlyNew)).not.toThrow();
    expect(() => new Webhook(before.current).verify(body, onlyNew)).toThrow();
  });
});
