import { describe, expect, it } from 'vitest';
import { SnapshotTracker, WriterSaturated, WriterSlots } from '../../services/platform/duck-store.js';

describe('snapshot watermark', () => {
  it('advances only when every earlier batch has settled', () => {
    const t = new SnapshotTracker(10);
    const seen: number[] = [];
    t.onAdvance((n) => seen.push(n));
    const a = t.reserve();
    const b = t.reserve();
    const c = t.reserve();
    expect([a, b, c]).toEqual([11, 12, 13]);
    t.commit(c);
    expect(t.latest).toBe(10);
    t.commit(a);
    expect(t.latest).toBe(11);
    t.abort(b);
    expect(t.latest).toBe(13);
    expect(seen).toEqual([11, 13]);
  });

  it('runs what must change with the watermark in the turn it moves, before its listeners', async () => {
    const t = new SnapshotTracker(3);
    let version = 1;
    const seen: [number, number][] = [];
    t.onAdvance((n) => seen.push([n, version]));
    const a = t.reserve();
    const b = t.reserve();
    t.whenVisible(b, () => (version = 2));
    t.commit(b);
    expect([t.latest, version]).toEqual([3, 1]); // a still lands: b is not visible
    t.commit(a);
    expect([t.latest, version]).toEqual([5, 2]);
    expect(seen).toEqual([[5, 2]]); // no listener saw 5 under version 1
    let late = false;
    t.whenVisible(4, () => (late = true)); // already visible: at once
    expect(late).toBe(true);
    // Behind a settle step: still in the turn the watermark moves.
    t.settleWith(() => new Promise((r) => setTimeout(r, 5)));
    const c = t.reserve();
    t.whenVisible(c, () => (version = 3));
    t.commit(c);
    expect(version).toBe(2);
    await t.visible(c);
    expect([t.latest, version]).toEqual([6, 3]);
    expect(seen.at(-1)).toEqual([6, 3]);
  });

  it('an aborted batch leaves a gap, never a half snapshot', () => {
    const t = new SnapshotTracker(0);
    const a = t.reserve();
    t.abort(a);
    expect(t.latest).toBe(0);
    const b = t.reserve();
    t.commit(b);
    expect(t.latest).toBe(2);
  });
});

describe('snapshot watermark with a settle step (the release step of stable disclosure)', () => {
  it('settled() waits for the steps of every committed snapshot, and answers at once when none waits', async () => {
    const t = new SnapshotTracker(4);
    await t.settled(); // nothing committed above the watermark
    let unblock!: () => void;
    const slow = new Promise<void>((r) => (unblock = r));
    const steps: number[][] = [];
    t.settleWith(async (ready) => {
      steps.push([...ready]);
      await slow;
    });
    const [a, b] = [t.reserve(), t.reserve()];
    t.commit(a);
    t.commit(b);
    let settled = false;
    const done = t.settled().then(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false); // 5's step is running, 6 waits for the next
    unblock();
    await done;
    expect(t.latest).toBe(6);
    expect(steps).toEqual([[5], [6]]);
  });

  it('settles committed snapshots in order before the watermark includes them, those ready at once in one step', async () => {
    const t = new SnapshotTracker(0);
    const log: string[] = [];
    let unblock!: () => void;
    const slow = new Promise<void>((r) => (unblock = r));
    t.settleWith(async (ready) => {
      log.push(`start ${ready.join(',')} (latest ${t.latest})`);
      if (ready[0] === 1) await slow;
      log.push(`end ${ready.join(',')}`);
    });
    t.onAdvance((n) => log.push(`visible ${n}`));
    const [a, b, c, d, e] = [t.reserve(), t.reserve(), t.reserve(), t.reserve(), t.reserve()];
    t.commit(b);
    expect(log).toEqual([]); // 1 is still landing
    t.commit(a); // 1 and 2 are ready together: one step settles both
    await new Promise((r) => setImmediate(r));
    expect(t.latest).toBe(0); // their step is running
    // While it runs, 4 and 5 commit and 3 aborts: the next step settles 4 and 5 together.
    t.commit(d);
    t.abort(c);
    t.commit(e);
    const eVisible = t.visible(e);
    unblock();
    await eVisible;
    expect(t.latest).toBe(5);
    expect(log).toEqual([
      'start 1,2 (latest 0)',
      'end 1,2',
      'visible 2',
      'start 4,5 (latest 2)',
      'end 4,5',
      'visible 5',
    ]);
  });

  it('a batch waits for its own settle step, never for a slower earlier batch still landing', async () => {
    const t = new SnapshotTracker(0);
    t.settleWith(() => Promise.resolve());
    const slow = t.reserve();
    const fast = t.reserve();
    t.commit(fast);
    // Resolves at once although `fast` is not visible: `slow` is still landing.
    await t.visible(fast);
    expect(t.latest).toBe(0);
    t.commit(slow);
    await t.visible(fast);
    expect(t.latest).toBe(fast);
  });

  it('a settle step that throws still lets the watermark pass (its atoms stay pending: fail closed)', async () => {
    const t = new SnapshotTracker(0);
    t.settleWith(() => Promise.reject(new Error('boom')));
    const a = t.reserve();
    t.commit(a);
    await t.visible(a);
    expect(t.latest).toBe(a);
  });
});

describe('settled', () => {
  it('resolves when the highest number handed out was aborted (it is never published)', async () => {
    const t = new SnapshotTracker(0);
    const a = t.reserve();
    const b = t.reserve();
    t.commit(a);
    t.abort(b);
    await t.visible(a);
    let done = false;
    await Promise.race([t.settled().then(() => (done = true)), new Promise((r) => setTimeout(r, 1_000))]);
    expect(done).toBe(true);
  });
});

describe('writer slots', () => {
  it("queues up to the limit, then refuses a partner's batch, never the room's own work", async () => {
    const s = new WriterSlots(2, 2);
    const r1 = await s.acquire('a');
    const r2 = await s.acquire('b');
    const p3 = s.acquire('c');
    const p4 = s.acquire('d');
    await expect(s.acquire('e')).rejects.toBeInstanceOf(WriterSaturated);
    expect(s.waiting).toBe(2);
    // Retention or a new time zone queues beyond the limit, and takes the first slot freed.
    let room: (() => void) | undefined;
    const own = s.acquire().then((r) => (room = r));
    expect(s.waiting).toBe(3);
    r1();
    await own;
    // The freed slot went to the room, not to c or d queued before it.
    expect(room).toBeDefined();
    expect([s.held('c'), s.held('d'), s.waiting]).toEqual([0, 0, 2]);
    room!();
    r2();
    const [r3, r4] = await Promise.all([p3, p4]);
    expect(s.busy).toBe(2);
    r3();
    r3();
    r4();
    expect(s.busy).toBe(0);
  });
});
