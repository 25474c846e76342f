// Service levels (issue #14) through the HTTP API on an agreement and batches of this test's own:
// weekly feeds landed at crafted times against a test clock; the month's review measures each
// partner's feed periods on time from the batches DuckDB holds; inside a maintenance window no
// feed is stale and nothing escalates, and the time in it does not count; bad service levels are
// refused naming their field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../../services/platform/clock.js';
import { ndjson } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

const agreement = `
partnership: { id: sl-test, title: Service level test, timezone: UTC }
partners:
  - { id: pa, name: Partner A }
  - { id: pb, name: Partner B }
defaults: { minGroupSize: 3 }
steering:
  - { name: Chair, email: chair@example.org }
kpis:
  - id: handling
    title: Handling time
    unit: minutes
    subject: parcel
    measure: avg
    grains: [week, month]
    disclosure: partnership
    breakdown: per_partner
    band: { upper: 1000 }
    evaluate: { grain: week }
    freshness: { every: P7D, grace: P1D }
    owners: { pa: { name: Olga, email: olga@pa.example }, pb: { name: Bert, email: bert@pb.example } }
    escalation: { ackWithin: PT12H }
    severity: critical
serviceLevels:
  incidents:
    critical: { acknowledge: PT12H, resolve: P2D }
    minor: { acknowledge: P2D, resolve: P10D }
  feedsOnTime: 0.8
  maintenanceWindows:
    - { partners: [pb], from: 2026-10-29T00:00:00Z, to: 2026-11-05T00:00:00Z, reason: pb moves its data centre }
    - { from: 2026-11-06T00:00:00Z, to: 2026-11-07T00:00:00Z, reason: joint network change }
    - { partners: [pb], from: 2026-11-16T00:00:00Z, to: 2026-11-18T00:00:00Z, reason: pb restores its feed }
`;

let t: TestRoom;
let dir: string;
let clock: TestClock;

/** One batch of `partner` received at `at` (the room's clock set there): three parcels that week. */
async function deliver(partner: string, at: string): Promise<void> {
  clock.set(at);
  const day = at.slice(0, 10);
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(
      [0, 1, 2].map((i) => ({
        kpi: 'handling',
        at: `${day}T0${i}:00:00Z`,
        value: 30 + i,
        subject: `${partner}-${day}-${i}`,
      })),
    ),
  });
  expect(res.status, await res.text()).toBe(202);
}

async function get(path: string, partner = 'pa'): Promise<any> {
  const res = await fetch(`${t.url}${path}`, {
    headers: { authorization: `Bearer ${await t.token(partner, 'analyst')}` },
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text);
}

/** Every KPI, feed and deadline evaluated at the clock's time, as the schedule would. */
async function evaluate(at: string): Promise<void> {
  clock.set(at);
  t.app.alerts!.engine.requestAll();
  await t.app.alerts!.engine.idle();
}

const feeds = async () => (await get('/v1/kpis')).kpis[0].feeds as any[];
const incidents = async () => (await get('/v1/incidents?kpi=handling')).incidents as any[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parity-sl-'));
  const file = join(dir, 'agreement.yaml');
  writeFileSync(file, agreement);
  clock = new TestClock('2026-09-29T00:00:00Z');
  t = await startTestRoom({ agreementFile: file, clock });
  // pa: every Wednesday. pb: skips Oct 14 (late until the 17th), then inside its window from Oct 29.
  // In time order, each batch evaluated at its own time (as a running room would).
  const batches = [
    ...['2026-09-30', '2026-10-07', '2026-10-14', '2026-10-21', '2026-10-28'].map((d) => [`${d}T06:00:00Z`, 'pa']),
    ...['2026-09-30', '2026-10-07', '2026-10-17', '2026-10-24', '2026-10-31'].map((d) => [`${d}T06:00:01Z`, 'pb']),
  ].sort(([a], [b]) => (a! < b! ? -1 : 1));
  for (const [at, partner] of batches) {
    await deliver(partner!, at!);
    await t.app.alerts!.engine.idle();
  }
}, 120_000);

afterAll(async () => {
  await t?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('service levels', () => {
  it("the month's review measures each partner's feed periods from the batches' arrival, a window excused", async () => {
    clock.set('2026-11-02T09:00:00Z');
    const review = await get('/v1/reviews/2026-10');
    const sl = review.serviceLevels;
    expect(sl.agreed).toBe(true);
    const of = (p: string) => sl.partners.find((x: any) => x.partner === p);
    // Slots from Oct 1: 1, 8, 15, 22, 29 (three days). pa: never stale.
    expect(of('pa').feeds).toMatchObject({ periods: 5, onTime: 5, excused: 0, share: 1, target: 0.8, met: true });
    // pb: stale from Oct 15 06:00 to Oct 17 06:00 (the slot of Oct 15 late); Oct 29–31 inside its window.
    expect(of('pb').feeds).toMatchObject({ periods: 4, onTime: 3, excused: 1, share: 0.75, met: false });
    expect(sl.maintenanceWindows).toEqual([
      {
        from: '2026-10-29T00:00:00.000Z',
        to: '2026-11-05T00:00:00.000Z',
        partners: ['pb'],
        reason: 'pb moves its data centre',
        // pb delivered inside it (Oct 31); known before the window's end plus its allowance.
        honoured: true,
      },
    ]);
    expect(of('pa').incidents.map((i: any) => [i.severity, i.level])).toEqual([
      ['critical', { acknowledge: 'PT12H', resolve: 'P2D' }],
      ['minor', { acknowledge: 'P2D', resolve: 'P10D' }],
    ]);
    // One document for both partners, and the rendered text names the attainment.
    expect((await get('/v1/reviews/2026-10', 'pb')).digest).toBe(review.digest);
    const text = await (
      await fetch(`${t.url}/v1/reviews/2026-10?format=text`, {
        headers: { authorization: `Bearer ${await t.token('pb', 'analyst')}` },
      })
    ).text();
    expect(text).toContain('SERVICE LEVELS');
    expect(text).toContain('3 of 4 (75 %), target 80 % — missed, 1 excused by maintenance');
    expect(text).toContain('pb moves its data centre');
  });

  it('the review form follows Accept by its q-values; an Accept that admits none is a 406 naming it', async () => {
    clock.set('2026-11-02T09:00:00Z');
    const token = await t.token('pa', 'analyst');
    const typeFor = async (accept: string | undefined) => {
      const res = await fetch(`${t.url}/v1/reviews/2026-10`, {
        headers: { authorization: `Bearer ${token}`, ...(accept === undefined ? {} : { accept }) },
      });
      const body = Buffer.from(await res.arrayBuffer());
      return [res.status, (res.headers.get('content-type') ?? '').split(';')[0], body] as const;
    };
    for (const [accept, status, type] of [
      [undefined, 200, 'application/json'],
      ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 200, 'text/html'],
      ['text/plain', 200, 'text/plain'],
      ['application/pdf;q=0.5, text/plain;q=0.4', 200, 'application/pdf'],
      ['application/pdf;q=0, text/*', 200, 'text/html'],
      ['image/png', 406, 'application/problem+json'],
    ] as const) {
      const [s, ty, body] = await typeFor(accept);
      expect([s, ty], String(accept)).toEqual([status, type]);
      if (status === 406) expect(JSON.parse(body.toString())).toMatchObject({ field: 'headers.accept' });
    }
  });

  it('the review as a PDF: the same bytes for both partners, and it parses back to the KPI, the attainment and the digest', async () => {
    clock.set('2026-11-02T09:00:00Z');
    const review = await get('/v1/reviews/2026-10');
    const pdf = async (partner: string, how: 'query' | 'accept') => {
      const res = await fetch(`${t.url}/v1/reviews/2026-10${how === 'query' ? '?format=pdf' : ''}`, {
        headers: {
          authorization: `Bearer ${await t.token(partner, 'analyst')}`,
          ...(how === 'accept' ? { accept: 'application/pdf' } : {}),
        },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/pdf');
      expect(res.headers.get('x-parity-digest')).toBe(review.digest);
      return Buffer.from(await res.arrayBuffer());
    };
    const a = await pdf('pa', 'query');
    expect(a.subarray(0, 5).toString()).toBe('%PDF-');
    expect((await pdf('pb', 'accept')).equals(a)).toBe(true);
    const { getDocument } = await import('pdfjs-dist/legacy/build/pdf.mjs');
    const fonts = join(dirname(createRequire(import.meta.url).resolve('pdfjs-dist/package.json')), 'standard_fonts/');
    const doc = await getDocument({ data: new Uint8Array(a), isEvalSupported: false, standardFontDataUrl: fonts })
      .promise;
    let text = '';
    for (let i = 1; i <= doc.numPages; i++) {
      const content = await (await doc.getPage(i)).getTextContent();
      text += content.items.map((it) => ('str' in it ? it.str : '')).join(' ') + '\n';
    }
    await doc.destroy();
    expect(text).toContain('Handling time');
    expect(text).toContain(review.digest);
    expect(text).toContain('Service levels');
    expect(text).toContain('pb moves its data centre');
    expect(text).toContain('3 of 4 (75 %)');
  });

  it('inside a window a feed is not stale and its time does not count; after it, the feed falls due', async () => {
    // Nov 3: pb's last batch (Oct 31) came inside its window, so its 8 days start at the window's
    // end (Nov 5) and the joint window's day (Nov 6) does not count either.
    await evaluate('2026-11-03T00:00:00Z');
    const pb = (await feeds()).find((f) => f.partner === 'pb');
    expect(pb).toMatchObject({
      stale: false,
      maintenanceUntil: '2026-11-05T00:00:00.000Z',
      dueBy: '2026-11-14T00:00:00.000Z',
    });
    expect((await incidents()).filter((i) => i.kind === 'stale')).toEqual([]);
    // pa is not in that window: due Nov 5 06:00 (Oct 28 + 8 days).
    expect((await feeds()).find((f) => f.partner === 'pa')).toMatchObject({ stale: false, maintenanceUntil: null });
  });

  it('an incident does not escalate while a window holds, nor until the time in it has been made up', async () => {
    // pa's feed went stale at Nov 5 06:00; the engine opens the incident at Nov 5 12:00, acknowledgement due in 12 h.
    await evaluate('2026-11-05T12:00:00Z');
    const [stale] = (await incidents()).filter((i) => i.kind === 'stale' && i.scope === 'pa');
    expect(stale).toMatchObject({ state: expect.stringMatching(/open|notified/), escalatedAt: null });
    // 12 h later the joint window has begun (Nov 6 00:00): no escalation, and the incident stays open.
    await evaluate('2026-11-06T20:00:00Z');
    const during = (await incidents()).find((i) => i.id === stale.id);
    expect(during).toMatchObject({ escalatedAt: null, state: stale.state });
    // Inside the window pa's feed is not stale, but it has not resumed: not resolved.
    expect((await feeds()).find((f) => f.partner === 'pa')).toMatchObject({ stale: false });
    // The deadline, the window not counted: Nov 7 00:00. Just before, nothing; just after, escalated.
    await evaluate('2026-11-06T23:59:00Z');
    expect((await incidents()).find((i) => i.id === stale.id).escalatedAt).toBeNull();
    await evaluate('2026-11-07T00:30:00Z');
    expect((await incidents()).find((i) => i.id === stale.id).escalatedAt).toBe('2026-11-07T00:30:00.000Z');
    // pb: due Nov 14 00:00 (both windows not counted); stale after it, and its incident opens.
    await evaluate('2026-11-13T23:00:00Z');
    expect((await feeds()).find((f) => f.partner === 'pb')).toMatchObject({ stale: false });
    await evaluate('2026-11-14T01:00:00Z');
    expect((await feeds()).find((f) => f.partner === 'pb')).toMatchObject({ stale: true, maintenanceUntil: null });
    expect((await incidents()).some((i) => i.kind === 'stale' && i.scope === 'pb')).toBe(true);
  });

  it("a stale incident stays open when its feed's window begins, and is resolved by a batch that arrives inside it", async () => {
    // pb went stale on Nov 14 (above); its window of Nov 16–18 silences the feed but does not mend it.
    const open = (await incidents()).find((i) => i.kind === 'stale' && i.scope === 'pb');
    expect(open).toMatchObject({ resolvedAt: null });
    await evaluate('2026-11-16T12:00:00Z');
    expect((await feeds()).find((f) => f.partner === 'pb')).toMatchObject({
      stale: false,
      maintenanceUntil: '2026-11-18T00:00:00.000Z',
    });
    expect((await incidents()).find((i) => i.id === open.id)).toMatchObject({ resolvedAt: null });
    // A batch arrives inside the window: the feed is back, the incident resolved automatically.
    // (the evaluation after the batch does it, at the batch's time.)
    await deliver('pb', '2026-11-17T06:00:00Z');
    await t.app.alerts!.engine.idle();
    expect((await incidents()).find((i) => i.id === open.id)).toMatchObject({
      state: 'resolved',
      resolution: 'auto',
      resolvedAt: '2026-11-17T06:00:00.000Z',
    });
  });

  it('bad service levels are refused with 400 naming the field', async () => {
    const admin = await t.token('pa', 'admin');
    const cases: [string, string, string][] = [
      [
        'critical: { acknowledge: PT12H, resolve: P2D }',
        'critical: { acknowledge: P3D, resolve: P2D }',
        'serviceLevels.incidents.critical.resolve',
      ],
      [
        'critical: { acknowledge: PT12H, resolve: P2D }',
        'critical: { acknowledge: soon, resolve: P2D }',
        'serviceLevels.incidents.critical.acknowledge',
      ],
      ['critical: { acknowledge: PT12H', 'urgent: { acknowledge: PT12H', 'serviceLevels.incidents'],
      ['feedsOnTime: 0.8', 'feedsOnTime: 80', 'serviceLevels.feedsOnTime'],
      ['partners: [pb], from', 'partners: [pz], from', 'serviceLevels.maintenanceWindows[0].partners[0]'],
      ['to: 2026-11-05T00:00:00Z', 'to: 2026-10-28T00:00:00Z', 'serviceLevels.maintenanceWindows[0].to'],
      ['to: 2026-11-05T00:00:00Z', 'to: 2026-11-06T00:00:01Z', 'serviceLevels.maintenanceWindows[0].to'],
      ['from: 2026-10-29T00:00:00Z', 'from: 29 October', 'serviceLevels.maintenanceWindows[0].from'],
      [', reason: joint network change', '', 'serviceLevels.maintenanceWindows[1].reason'],
      ['    severity: critical', '    severity: urgent', 'kpis[0].severity'],
      ['freshness: { every: P7D', 'freshness: { every: PT0S', 'kpis[0].freshness.every'],
      // Two windows back to back for pb: 7 days, then 1 more without a break.
      [
        '    - { from: 2026-11-06T00:00:00Z',
        '    - { partners: [pb], from: 2026-11-05T00:00:00Z, to: 2026-11-06T00:00:00Z, reason: more }\n    - { from: 2026-11-06T00:00:00Z',
        'serviceLevels.maintenanceWindows[1].to',
      ],
    ];
    for (const [from, to, field] of cases) {
      expect(agreement.includes(from), from).toBe(true);
      const res = await fetch(`${t.url}/v1/agreement/proposals`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ document: agreement.replace(from, to), reason: 'service levels' }),
      });
      const body = await res.json();
      expect(res.status, `${to}: ${JSON.stringify(body)}`).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(JSON.stringify(body), to).toContain(field);
    }
  });
});
