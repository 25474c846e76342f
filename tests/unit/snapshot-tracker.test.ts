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

describe('writer slots', () => {
  it('queues up to the limit, then refuses', async () => {
    const s = new WriterSlots(1, 1);
    const r1 = await s.acquire();
    const p2 = s.acquire();
    await expect(s.acquire()).rejects.toBeInstanceOf(WriterSaturated);
    expect(s.waiting).toBe(1);
    r1();
    const r2 = await p2;
    expect(s.busy).toBe(1);
    r2();
    r2();
    expect(s.busy).toBe(0);
  });
});
