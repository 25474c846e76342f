import { describe, expect, it } from 'vitest';
import { BackgroundLoop } from '../../services/platform/background-loop.js';
import { retryPause } from '../../services/platform/backoff.js';
import { EVALUATION_SHARE } from '../../services/alerts/alert-engine.js';

const noop = () => Promise.resolve();

/** Resolves once `done` holds, or after 10 s. */
const until = async (done: () => boolean) => {
  const deadline = performance.now() + 10_000;
  while (!done() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A loop whose runs take 100 ms each, their starts recorded in `starts`, kept to 1 % of the
 * machine under sustained ingest (`busy`): a pause of ≥ 9.9 s after each run.
 */
function slowLoop(starts: number[], busy: () => boolean): BackgroundLoop {
  return new BackgroundLoop(
    async () => {
      starts.push(performance.now());
      await new Promise((r) => setTimeout(r, 100));
    },
    busy,
    rethrow,
    { maxShare: 0.01 },
  );
}

/** A run's failure fails the test. */
const rethrow = (err: unknown) => {
  throw err;
};

describe('the pause of background work under sustained ingest', () => {
  it('is DUTY times the run, capped at MAX_GAP_MS, without a share bound (rollups)', () => {
    const loop = new BackgroundLoop(
      noop,
      () => true,
      () => {},
    );
    expect(loop.gapAfter(50)).toBe(50 * BackgroundLoop.DUTY);
    expect(loop.gapAfter(1_000)).toBe(BackgroundLoop.MAX_GAP_MS);
    expect(loop.gapAfter(10_000)).toBe(BackgroundLoop.MAX_GAP_MS);
  });

  it('keeps the work to its share however long a run takes (alert evaluation)', () => {
    const loop = new BackgroundLoop(
      noop,
      () => true,
      () => {},
      { maxShare: EVALUATION_SHARE },
    );
    // Short runs are as prompt as before: the cap is not reached.
    expect(loop.gapAfter(50)).toBe(50 * BackgroundLoop.DUTY);
    for (const took of [1, 50, 125, 150, 170, 200, 500, 1_000, 2_000, 10_000]) {
      const gap = loop.gapAfter(took);
      expect(took / (took + gap), `a run of ${took} ms`).toBeLessThanOrEqual(EVALUATION_SHARE + 1e-12);
      // Never later than the share needs, or the cap would give.
      expect(gap).toBeLessThanOrEqual(Math.max(BackgroundLoop.MAX_GAP_MS, took * (1 / EVALUATION_SHARE - 1)) + 1e-9);
    }
    // A run of 1 s under the cap alone got 1.5 s of pause: 40 % of the time.
    expect(loop.gapAfter(1_000)).toBeCloseTo(9_000);
  });

  it('waits that pause before the next run while ingest is busy, and not when it is idle', async () => {
    const starts: number[] = [];
    const ends: number[] = [];
    let busy = true;
    const loop = new BackgroundLoop(
      async () => {
        starts.push(performance.now());
        await new Promise((r) => setTimeout(r, 150));
        ends.push(performance.now());
      },
      () => busy,
      rethrow,
      // A share small enough that it, not the 1.5 s cap, decides the pause (150 ms → ≥ 2.85 s).
      { maxShare: 0.05 },
    );
    loop.request();
    await until(() => starts.length > 0); // a sleep could end before a stalled loop's run began
    loop.request(); // while the first run is under way
    await loop.idle();
    expect(starts).toHaveLength(2);
    // The first run took ≥ 150 ms, and ingest was busy: its pause came before the second.
    const took = ends[0]! - starts[0]!;
    expect(loop.gapAfter(took)).toBeGreaterThan(BackgroundLoop.MAX_GAP_MS);
    expect(starts[1]! - ends[0]!).toBeGreaterThanOrEqual(loop.gapAfter(took) - 5);
    // Ingest goes idle: after a run that saw it idle, the next request runs at once, not a pause later.
    busy = false;
    await new Promise((r) => setTimeout(r, loop.gapAfter(ends[1]! - starts[1]!) + 50)); // the pending pause passes
    loop.request();
    await loop.idle();
    expect(starts).toHaveLength(3);
    const asked = performance.now();
    loop.request();
    await loop.idle();
    expect(starts).toHaveLength(4);
    expect(starts[3]! - asked).toBeLessThan(loop.gapAfter(150) - 200);
  });

  it('stops at once when asked during a pause, without running again', async () => {
    let runs = 0;
    const loop = new BackgroundLoop(
      async () => {
        runs++;
        await new Promise((r) => setTimeout(r, 100));
      },
      () => true, // ingest always busy: every run is followed by its pause
      rethrow,
      { maxShare: 0.01 }, // 100 ms → a pause of ≥ 9.9 s
    );
    loop.request();
    await new Promise((r) => setTimeout(r, 20));
    loop.request(); // wants a second run, after the pause
    await new Promise((r) => setTimeout(r, 300)); // the first run is over; the pause has begun
    const t0 = performance.now();
    await loop.stop();
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(runs).toBe(1);
  });

  it('does not count a scheduled request during a run as sustained ingest', async () => {
    const starts: number[] = [];
    const loop = slowLoop(starts, () => false); // no batch landing
    loop.request();
    await until(() => starts.length > 0); // a sleep could end before a stalled loop's run began
    loop.request({ scheduled: true }); // the timer's, while the first run is under way
    await loop.idle();
    expect(starts).toHaveLength(2);
    // A batch's request would have meant a pause of ≥ 9.9 s; the timer's runs next.
    expect(starts[1]! - starts[0]!).toBeLessThan(2_000);
  });
});

describe('a background loop stopped and started again', () => {
  it('takes no request while stopped, and runs requests again once resumed', async () => {
    let runs = 0;
    const loop = new BackgroundLoop(
      async () => {
        runs++;
      },
      () => false,
      rethrow,
    );
    loop.request();
    await loop.idle();
    expect(runs).toBe(1);
    await loop.stop();
    loop.request();
    await loop.idle();
    expect(runs).toBe(1);
    loop.resume();
    loop.request();
    await loop.idle();
    expect(runs).toBe(2);
  });

  it('does not wait out, after resuming, the pause it was in when stopped', async () => {
    const starts: number[] = [];
    const loop = slowLoop(starts, () => true); // ingest busy: each run is followed by a pause of ≥ 9.9 s
    loop.request();
    await loop.idle();
    await loop.stop();
    loop.resume();
    const asked = performance.now();
    loop.request();
    await loop.idle();
    expect(starts).toHaveLength(2);
    expect(starts[1]! - asked).toBeLessThan(2_000);
  });
});

describe('a background loop whose run failed', () => {
  /** Work whose runs numbered in `failing` throw (the first run is 1); the starts recorded. */
  function flaky(failing: number[], starts: number[]) {
    return async () => {
      starts.push(performance.now());
      if (failing.includes(starts.length)) throw new Error(`run ${starts.length} failed`);
    };
  }

  it('tries again by itself after a pause that doubles with each failure in a row; a success ends the retries and resets the pause', async () => {
    const starts: number[] = [];
    const told: [string, number | undefined][] = [];
    const loop = new BackgroundLoop(
      flaky([1, 2, 3, 5], starts),
      () => false,
      (err, retryInMs) => void told.push([(err as Error).message, retryInMs]),
      { retry: { firstMs: 40, maxMs: 100 } },
    );
    expect([1, 2, 3, 4, 40].map((n) => loop.retryAfter(n))).toEqual([40, 80, 100, 100, 100]);
    // The same pauses as the push client's and the release step's (one formula).
    expect([1, 2, 3, 7, 8, 1_000].map((n) => retryPause(n, { firstMs: 500, maxMs: 30_000 }))).toEqual([
      500, 1_000, 2_000, 30_000, 30_000, 30_000,
    ]);
    loop.request(); // the only request
    await until(() => starts.length === 4);
    expect(told).toEqual([
      ['run 1 failed', 40],
      ['run 2 failed', 80],
      ['run 3 failed', 100],
    ]);
    for (const [i, pause] of [40, 80, 100].entries())
      expect(starts[i + 1]! - starts[i]!, `the pause after failure ${i + 1}`).toBeGreaterThanOrEqual(pause - 5);
    // The fourth run succeeded: nothing more runs unasked.
    await sleep(300);
    expect(starts).toHaveLength(4);
    // The next failure, after that success, waits the first pause again (not the fourth).
    loop.request();
    await until(() => starts.length === 6);
    expect(told.at(-1)).toEqual(['run 5 failed', 40]);
    expect(loop.stats.failures).toBe(4);
    await sleep(200);
    expect(starts).toHaveLength(6);
  });

  it('a request during the pause runs at once, and the retry it stood for does not run as well', async () => {
    const starts: number[] = [];
    const loop = new BackgroundLoop(flaky([1], starts), () => false, rethrowUnlessFirst(), {
      // A pause long enough that no stall of a busy machine reaches it before the request below.
      retry: { firstMs: 2_000, maxMs: 2_000 },
    });
    loop.request();
    await until(() => starts.length === 1);
    await sleep(50); // in the retry's pause
    loop.request(); // a batch's request
    await until(() => starts.length === 2);
    expect(starts[1]! - starts[0]!).toBeLessThan(2_000);
    await sleep(2_300); // past the retry's time
    expect(starts).toHaveLength(2);
  });

  it('is not tried again once stopped — during its pause or during the run that failed — nor without the option', async () => {
    const starts: number[] = [];
    const told: (number | undefined)[] = [];
    const loop = new BackgroundLoop(
      flaky([1, 2], starts),
      () => false,
      (_e, retryInMs) => void told.push(retryInMs),
      { retry: { firstMs: 100, maxMs: 1_000 } },
    );
    loop.request();
    await loop.idle();
    expect(told).toEqual([100]);
    await loop.stop(); // during the retry's pause
    loop.resume(); // at once: the stopped loop's retry must not fire into the resumed one
    await sleep(300);
    expect(starts).toHaveLength(1);
    // Resumed and asked, its failure is tried again from the first pause (not the second's 200).
    loop.request();
    await loop.idle();
    expect(told).toEqual([100, 100]);
    await loop.stop();

    // Stopped while a run is under way, which then fails: no retry is set.
    let fail!: () => void;
    const failing = new Promise<void>((r) => (fail = r));
    const inRun: number[] = [];
    const toldInRun: (number | undefined)[] = [];
    const held = new BackgroundLoop(
      async () => {
        inRun.push(performance.now());
        if (inRun.length === 1) {
          await failing;
          throw new Error('failed after the stop');
        }
      },
      () => false,
      (_e, retryInMs) => void toldInRun.push(retryInMs),
      { retry: { firstMs: 50, maxMs: 50 } },
    );
    held.request();
    await until(() => inRun.length === 1);
    const stopping = held.stop();
    fail();
    await stopping;
    expect(toldInRun).toEqual([undefined]);
    held.resume();
    await sleep(250);
    expect(inRun).toHaveLength(1);

    const plain: number[] = [];
    const plainTold: (number | undefined)[] = [];
    const noRetry = new BackgroundLoop(
      flaky([1, 2, 3], plain),
      () => false,
      (_e, retryInMs) => void plainTold.push(retryInMs),
    );
    noRetry.request();
    await noRetry.idle();
    await sleep(200);
    expect(plain).toHaveLength(1);
    expect(plainTold).toEqual([undefined]);
    expect(noRetry.stats.failures).toBe(1);
  });
});

/** An onError that accepts the first failure (the one the test causes) and fails the test on any other. */
function rethrowUnlessFirst() {
  let seen = 0;
  return (err: unknown) => {
    if (seen++ > 0) throw err;
  };
}

describe('whether background work is under way (/metrics: parity_alert_evaluation_busy)', () => {
  it('is busy from a request until the run it asked for, and one asked for meanwhile, have ended', async () => {
    let finish!: () => void;
    let runs = 0;
    const loop = new BackgroundLoop(
      async () => {
        runs++;
        await new Promise<void>((r) => (finish = r));
      },
      () => false,
      rethrow,
    );
    expect(loop.busy).toBe(false);
    loop.request();
    expect(loop.busy).toBe(true); // asked for, not started yet
    await expect.poll(() => runs, { timeout: 10_000 }).toBe(1);
    expect(loop.busy).toBe(true); // running
    // Asked for during the run: the next run follows it (a scheduled request, so without the
    // pause a batch's would add under sustained ingest).
    loop.request({ scheduled: true });
    finish();
    await expect.poll(() => runs, { timeout: 10_000 }).toBe(2);
    expect(loop.busy).toBe(true);
    finish();
    await loop.idle();
    expect(loop.busy).toBe(false);
    expect(runs).toBe(2);
  });
});
