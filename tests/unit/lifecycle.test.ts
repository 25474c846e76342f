import { describe, expect, it } from 'vitest';
import { Lifecycle } from '../../services/platform/lifecycle.js';

describe('the start/stop discipline of background services', () => {
  it('starts once however often asked, and again once a stop has resolved', async () => {
    const l = new Lifecycle('work');
    expect(l.stopped).toBe(false); // never started: work asked of it still runs
    expect(l.begin()).toBe(true);
    expect(l.begin()).toBe(false);
    expect(l.running).toBe(true);
    const seen: boolean[] = [];
    await l.stop(async () => void seen.push(l.stopped));
    expect(seen).toEqual([true]); // the service's own stop sees itself stopped
    expect(l.running).toBe(false);
    expect(l.stopped).toBe(true);
    expect(l.begin()).toBe(true);
    expect(l.stopped).toBe(false);
  });

  it('refuses a start while a stop is under way, and shares that stop with every caller meanwhile', async () => {
    const l = new Lifecycle('work');
    l.begin();
    let release!: () => void;
    let stops = 0;
    const slow = () => {
      stops++;
      return new Promise<void>((r) => (release = r));
    };
    const first = l.stop(slow);
    const second = l.stop(slow);
    expect(second).toBe(first);
    expect(stops).toBe(1);
    expect(l.running).toBe(false);
    expect(() => l.begin()).toThrow('work: start() while stop() is under way; await stop() first');
    release();
    await first;
    expect(l.begin()).toBe(true);
  });

  it('takes a start again after a failed one is abandoned, and after a stop that failed', async () => {
    const l = new Lifecycle('work');
    l.begin();
    l.abandon();
    expect(l.begin()).toBe(true);
    await expect(l.stop(() => Promise.reject(new Error('closing failed')))).rejects.toThrow('closing failed');
    expect(l.begin()).toBe(true);
  });
});
