// The monthly review's scheduled send (issue #14): on the first working day of a month, in the
// partnership's zone, last month's review goes by e-mail to every partner's contacts and the
// steering committee, once — delivered to a real local SMTP server; a re-send goes out again.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../../services/platform/clock.js';
import { firstWorkingDay } from '../../services/reviews/monthly-review-service.js';
import { runParity } from '../helpers/spawn-room.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { MailCatcher } from '../helpers/receivers.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

const agreement = `
partnership: { id: review-send, title: Review send test, timezone: Pacific/Auckland }
partners:
  - { id: north, name: North Co, contacts: [{ name: Nora, email: nora@north.example }, { name: Ned, email: ned@north.example }] }
  - { id: south, name: South Co, contacts: [{ name: Sam, email: sam@south.example }] }
  - { id: west, name: West Co }
defaults: { minGroupSize: 3 }
steering:
  - { name: Chair, email: chair@example.org }
  - { name: Nora as chair, email: nora@north.example }
kpis:
  - id: parcels
    title: Parcels per route
    unit: parcels
    subject: route
    measure: avg
    grains: [day, month]
    disclosure: partnership
    breakdown: per_partner
    band: { lower: 10 }
    evaluate: { grain: day }
    freshness: { every: P7D, grace: P7D }
    owners: { north: { name: Olli, email: olli@north.example } }
    escalation: { ackWithin: P7D }
  - id: secret_checks
    title: Secret checks
    unit: share
    subject: check
    measure: rate
    range: [0, 1]
    grains: [month]
    disclosure: need_to_know
    needToKnow: [dpo@north.example]
    breakdown: per_partner
    band: { lower: 0.9 }
    evaluate: { grain: month }
    freshness: { every: P30D, grace: P30D }
    owners: { north: { name: Dora, email: dpo@north.example } }
    escalation: { ackWithin: P7D }
`;

let t: TestRoom;
let mail: MailCatcher;
let dir: string;
// 20 October 2026 in Auckland: an agreement change is made in the month reviewed.
const clock = new TestClock('2026-10-19T20:00:00Z');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parity-review-send-'));
  writeFileSync(join(dir, 'agreement.yaml'), agreement);
  mail = await new MailCatcher().start();
  t = await startTestRoom({
    agreementFile: join(dir, 'agreement.yaml'),
    clock,
    env: { SMTP_URL: mail.url, PARITY_REVIEW_SEND: 'on' },
  });
  // Version 2, activated in October: the shared KPI's band and the need-to-know KPI's band change.
  const v2 = agreement
    .replace('band: { lower: 10 }', 'band: { lower: 11 }')
    .replace('band: { lower: 0.9 }', 'band: { lower: 0.95 }');
  const propose = await fetch(`${t.url}/v1/agreement/proposals`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token('north', 'admin')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ document: v2, reason: 'tighter bands' }),
  });
  const proposal = (await propose.json()) as { id: string };
  expect(propose.status, JSON.stringify(proposal)).toBe(201);
  for (const p of ['south', 'west']) {
    const r = await fetch(`${t.url}/v1/agreement/proposals/${proposal.id}/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.token(p, 'admin')}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(r.status, await r.text()).toBe(200);
  }
  // Sunday 1 November 2026, 09:00 in Auckland: the month's first working day is Monday the 2nd.
  clock.set('2026-10-31T20:00:00Z');
  const points: TestPoint[] = ['north', 'south', 'west'].flatMap((p, j) =>
    Array.from({ length: 12 }, (_, i) => ({
      kpi: 'parcels',
      at: `2026-10-${String(5 + (i % 20)).padStart(2, '0')}T01:00:00Z`,
      value: 12 + j + (i % 3),
      subject: `${p}-${i}`,
    })),
  );
  for (const p of ['north', 'south', 'west']) {
    const res = await fetch(`${t.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.token(p, 'ingest')}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(points.filter((x) => x.subject.startsWith(p))),
    });
    expect(res.status).toBe(202);
  }
}, 120_000);

afterAll(async () => {
  await t?.close();
  await mail?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the scheduled evaluation (as its timer does) and lets delivery finish. */
async function schedule(): Promise<void> {
  const alerts = t.app.alerts!;
  alerts.engine.requestAll();
  await alerts.engine.idle();
  await alerts.notifier.settle();
}

// October's review (the room, started in October, sent September's on its first evaluation).
const reviewMail = () => mail.messages.filter((m) => m.subject?.startsWith('[Parity] Monthly review 2026-10'));

describe('the monthly review by e-mail', () => {
  it('knows the first working day of a month', () => {
    expect(firstWorkingDay('2026-11-01')).toBe('2026-11-02');
    expect(firstWorkingDay('2026-08-01')).toBe('2026-08-03');
    expect(firstWorkingDay('2026-12-01')).toBe('2026-12-01');
  });

  it('goes out on the first working day in the partnership zone, once per recipient, and again on a re-send', async () => {
    await schedule();
    expect(reviewMail()).toEqual([]);
    // Nor may a reader have it built before its day (its last days' data may still arrive).
    const early = await fetch(`${t.url}/v1/reviews/2026-10`, {
      headers: { authorization: `Bearer ${await t.token('west', 'analyst')}` },
    });
    expect(early.status).toBe(400);
    expect(await early.text()).toContain('is built on 2026-11-02');
    // 08:59 on Monday 2 November in Auckland is still Sunday in UTC: the zone decides.
    clock.set('2026-11-01T19:59:00Z');
    await schedule();
    await mail.waitFor(() => reviewMail().length >= 4);
    const review = await (
      await fetch(`${t.url}/v1/reviews/2026-10`, {
        headers: { authorization: `Bearer ${await t.token('west', 'analyst')}` },
      })
    ).json();
    const to = reviewMail()
      .map((m) => (m.to as any).value[0].address)
      .sort();
    // Nora is a contact of north and on the steering committee: one e-mail.
    expect(to).toEqual(['chair@example.org', 'ned@north.example', 'nora@north.example', 'sam@south.example']);
    // The agreement change of October, as every partner may read it: the shared KPI's band only.
    expect(review.agreementChanges).toEqual([
      { version: 2, activatedAt: expect.any(String), changes: ['KPI parcels: band.lower 10 → 11'] },
    ]);
    for (const m of reviewMail()) {
      expect(m.text).not.toMatch(/secret/i);
      expect(m.subject).toBe('[Parity] Monthly review 2026-10 — Review send test');
      expect(m.text).toContain(`Digest ${review.digest}`);
      expect(m.text).toContain('Parcels per route');
      expect(String(m.html)).toContain(review.digest);
      expect(m.headers.get('x-parity-review')).toBe('2026-10');
    }
    // Later evaluations that day and the next do not send it again.
    await schedule();
    clock.advance(86_400_000);
    await schedule();
    expect(reviewMail()).toHaveLength(4);
    const listed = (
      await (
        await fetch(`${t.url}/v1/reviews`, {
          headers: { authorization: `Bearer ${await t.token('north', 'analyst')}` },
        })
      ).json()
    ).reviews;
    expect(listed[0]).toMatchObject({ month: '2026-10', digest: review.digest });
    expect(listed[0].sentAt).not.toBeNull();

    // A re-send: `parity review send --month` (a steering or admin token) asks the room to send the
    // same kept document to everyone again; an analyst may not, and a month not closed is refused.
    const analyst = await fetch(`${t.url}/v1/reviews/2026-10/send`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.token('west', 'analyst')}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(analyst.status).toBe(403);
    const steering = await t.token('south', 'steering');
    const open = await runParity(['review', 'send', '--month', '2026-11', '--url', t.url, '--token', steering]);
    expect(open.code).toBe(1);
    expect(open.stderr).toMatch(/400: month: 2026-11 is not closed yet.*\(params\.month\)/);
    const sent = await runParity(['review', 'send', '--month', '2026-10', '--url', t.url], { PARITY_TOKEN: steering });
    expect(sent.stderr).toBe('');
    expect(sent.stdout).toBe(`sent the review of 2026-10 (digest ${review.digest}): 4 messages\n`);
    expect(sent.code).toBe(0);
    await t.app.alerts!.notifier.settle();
    await mail.waitFor(() => reviewMail().length >= 8);
    expect(new Set(reviewMail().map((m) => m.text))).toHaveProperty('size', 1);
    // A partner admin may send it again only 12 hours after the last send (a red team's admin
    // sent one month's review 20 times in a row); steering may at once.
    const admin = await t.token('north', 'admin');
    const resend = () =>
      fetch(`${t.url}/v1/reviews/2026-10/send`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: '{}',
      });
    const tooSoon = await resend();
    expect(tooSoon.status).toBe(429);
    expect(tooSoon.headers.get('retry-after')).toBe(String(12 * 3600));
    expect(tooSoon.headers.get('content-type')).toMatch(/application\/problem\+json/);
    clock.advance(12 * 3_600_000 + 1000);
    expect((await resend()).status).toBe(202);
    expect((await resend()).status).toBe(429);
    await t.app.alerts!.notifier.settle();
    await mail.waitFor(() => reviewMail().length >= 12);
    expect(reviewMail()).toHaveLength(12);
  });
});
