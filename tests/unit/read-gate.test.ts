import { describe, expect, it } from 'vitest';
import { ReadGate, SYSTEM_READ } from '../../services/query/read-gate.js';
import { Problem } from '../../services/platform/errors.js';

/** A read that ends when the test says so, recording when it started. */
function reads(log: string[]) {
  const open = new Map<string, () => void>();
  return {
    read: (name: string) => () =>
      new Promise<string>((resolve) => {
        log.push(name);
        open.set(name, () => resolve(name));
      }),
    end: async (name: string) => {
      open.get(name)!();
      // Let the gate hand the slot over and the next read start.
      for (let i = 0; i < 5; i++) await Promise.resolve();
    },
  };
}

describe('the gate of reads from the points', () => {
  it('runs at most its slots at once, and gives a freed slot to another caller before the one whose read ended', async () => {
    const log: string[] = [];
    const { read, end } = reads(log);
    const gate = new ReadGate(1, 4);
    // One analyst floods: its first read runs, three wait; then another partner's read arrives.
    const flood = ['a1', 'a2', 'a3', 'a4'].map((n) => gate.run('token-a', read(n)));
    const other = gate.run('token-b', read('b1'));
    await Promise.resolve();
    expect(log).toEqual(['a1']);
    expect([gate.running, gate.waiting]).toEqual([1, 4]);
    await end('a1');
    // b's read goes next, not a's second: a just had its turn.
    expect(log).toEqual(['a1', 'b1']);
    await end('b1');
    await end('a2');
    await end('a3');
    await end('a4');
    expect(log).toEqual(['a1', 'b1', 'a2', 'a3', 'a4']);
    expect(await Promise.all([...flood, other])).toEqual(['a1', 'a2', 'a3', 'a4', 'b1']);
    expect([gate.running, gate.waiting]).toEqual([0, 0]);
  });

  it('answers 429 with Retry-After past a caller’s waiting reads; the room’s own reads always wait', async () => {
    const log: string[] = [];
    const { read, end } = reads(log);
    const gate = new ReadGate(1, 2);
    const held = gate.run('token-a', read('a1'));
    const waiting = [gate.run('token-a', read('a2')), gate.run('token-a', read('a3'))];
    const refused = await gate.run('token-a', read('a4')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Problem);
    expect((refused as Problem).status).toBe(429);
    expect((refused as Problem).headers['retry-after']).toBe('1');
    expect(gate.refused).toBe(1);
    // Another caller is not refused for a's flood, nor is the room's own evaluation.
    const system = [1, 2, 3, 4].map((i) => gate.run(SYSTEM_READ, read(`s${i}`)));
    const b = gate.run('token-b', read('b1'));
    // Round robin over the callers waiting, in the order they came: a, the room, b.
    const order = ['a1', 's1', 'a2', 'b1', 's2', 'a3', 's3', 's4'];
    for (const name of order) await end(name);
    await Promise.all([held, ...waiting, ...system, b]);
    expect(log).toEqual(order);
  });
});
