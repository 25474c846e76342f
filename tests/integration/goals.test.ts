// Goals, milestones, exit criteria and the stage gate (issue #14) through the HTTP API, on an
// agreement and data of this test's own: crafted monthly series whose disclosed values make each
// milestone met, missed, withheld, on track or at risk; every judgement reproducible through
// the series API at its snapshot; need-to-know goals and criteria kept from those who may not read them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalDigest } from '../../services/platform/canonical-json.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { HookReceiver, MailCatcher } from '../helpers/receivers.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

const agreement = `
partnership: { id: goal-test, title: Goal test, timezone: UTC }
partners:
  - { id: pa, name: Partner A }
  - { id: pb, name: Partner B }
  - { id: pc, name: Partner C }
defaults: { minGroupSize: 3 }
steering:
  - { name: Chair, email: chair@example.org }
intent: Sooner and fewer failures.
stage:
  current: proof_of_concept
  next:
    - { kpi: delay, grain: month, atMost: 30, periods: 2 }
    - { kpi: fails, scope: pa, grain: month, below: 0.5, periods: 2 }
    - { kpi: audit, grain: month, atLeast: 0.9 }
kpis:
  - id: delay
    title: Delay
    unit: hours
    subject: order
    measure: avg
    grains: [month]
    disclosure: partnership
    breakdown: per_partner
    band: { upper: 100 }
    evaluate: { grain: month }
    freshness: { every: P1D, grace: PT6H }
    owners: { pa: { name: Olga, email: olga@pa.example } }
    escalation: { ackWithin: P2D }
  - id: fails
    title: Failures
    unit: share
    subject: delivery
    measure: rate
    range: [0, 1]
    grains: [month]
    disclosure: partnership
    breakdown: per_partner
    band: { upper: 1 }
    evaluate: { grain: month }
    freshness: { every: P1D, grace: PT6H }
    owners: { pa: { name: Olga, email: olga@pa.example } }
    escalation: { ackWithin: P2D }
  - id: audit
    title: Audit checks
    unit: share
    subject: control
    measure: rate
    range: [0, 1]
    grains: [month]
    disclosure: need_to_know
    needToKnow: [dpo@pa.example, olga@pa.example]
    breakdown: per_partner
    band: { lower: 0 }
    evaluate: { grain: month }
    freshness: { every: P7D, grace: P2D }
    owners: { pa: { name: Dora, email: dora@pa.example } }
    escalation: { ackWithin: P2D }
goals:
  - id: sooner_a
    title: A delivers within 8 hours
    kpi: delay
    scope: pa
    direction: at_most
    target: 8
    start: 2026-06-01
    due: 2027-02-28
    milestones:
      - { date: 2026-07-15, target: 20 }
      - { date: 2026-08-31, target: 12 }
      - { date: 2026-09-30, target: 13 }
      - { date: 2026-12-31, target: 10 }
    owners: { pa: { name: Olga, email: olga@pa.example, webhook: HOOK } }
    assumptions: [The new depot opens in August.]
    exitCriteria:
      - { kpi: fails, scope: pa, grain: month, above: 0.5, periods: 2 }
      # On the need-to-know KPI: Olga may read it; pa's analysts may not.
      - { kpi: audit, scope: pa, grain: month, atLeast: 0.5 }
  - id: sooner_b
    title: B at least 9
    kpi: delay
    scope: pb
    direction: at_least
    target: 9
    start: 2026-08-01
    due: 2027-01-31
    milestones:
      - { date: 2026-12-31, target: 8 }
    owners: { pb: { name: Bea, email: bea@pb.example } }
  - id: audits
    title: Audits pass
    kpi: audit
    scope: pa
    direction: at_least
    target: 0.95
    start: 2026-08-01
    due: 2027-06-30
    owners: { pa: { name: Dpo, email: dpo@pa.example } }
`;

let t: TestRoom;
let dir: string;
let hooks: HookReceiver;
/** The agreement as the room runs it (the webhook placeholder filled in). */
let active = '';
let mail: MailCatcher;

/** `n` subjects of one partner in one month (on its 10th), each with `value(i)`. */
function month(kpi: string, ym: string, n: number, value: (i: number) => number, tag: string): TestPoint[] {
  return Array.from({ length: n }, (_, i) => ({
    kpi,
    at: `${ym}-10T${String(8 + (i % 10)).padStart(2, '0')}:00:00Z`,
    value: value(i),
    subject: `${tag}-${ym}-${i}`,
  }));
}

async function push(partner: string, points: TestPoint[]): Promise<number> {
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(points),
  });
  const body = (await res.json()) as { snapshot: number };
  expect(res.status, JSON.stringify(body)).toBe(202);
  return body.snapshot;
}

async function get(path: string, token?: string): Promise<{ status: number; text: string; body: any }> {
  const res = await fetch(`${t.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parity-goals-'));
  const file = join(dir, 'agreement.yaml');
  hooks = await new HookReceiver().start();
  mail = await new MailCatcher().start();
  active = agreement.replace('HOOK', hooks.url('/olga'));
  writeFileSync(file, active);
  t = await startTestRoom({ agreementFile: file, env: { SMTP_URL: mail.url } });
  // pa's delay per month: Jun 25, Jul 18, Aug 14, Sep 2 subjects only (withheld), Oct 12.
  const a = [
    ...month('delay', '2026-06', 4, () => 25, 'a'),
    ...month('delay', '2026-07', 4, () => 18, 'a'),
    ...month('delay', '2026-08', 4, () => 14, 'a'),
    ...month('delay', '2026-09', 2, () => 13, 'a'),
    ...month('delay', '2026-10', 4, () => 12, 'a'),
    ...month('fails', '2026-09', 5, (i) => (i < 3 ? 1 : 0), 'a'),
    ...month('fails', '2026-10', 5, (i) => (i < 4 ? 1 : 0), 'a'),
    ...month('audit', '2026-10', 4, () => 1, 'a'),
  ];
  await push('pa', a);
  // pb's delay is flat at 5 from August: far from its target of at least 8, no trend towards it.
  const b = ['2026-06', '2026-07', '2026-08', '2026-09', '2026-10'].flatMap((ym) =>
    month('delay', ym, 3, () => (ym >= '2026-08' ? 5 : 6), 'b'),
  );
  await push('pb', [...b, ...month('audit', '2026-10', 3, () => 1, 'b')]);
  await push(
    'pc',
    ['2026-06', '2026-07', '2026-08', '2026-09', '2026-10'].flatMap((ym) => month('delay', ym, 3, () => 20, 'c')),
  );
}, 120_000);

afterAll(async () => {
  await t?.close();
  await hooks?.close();
  await mail?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('GET /v1/goals', () => {
  it('judges each milestone on the disclosed value of its period: met, missed, withheld, on track', async () => {
    const r = await get('/v1/goals', await t.token('pb', 'analyst'));
    expect(r.status).toBe(200);
    expect(r.body.intent).toBe('Sooner and fewer failures.');
    const a = r.body.goals.find((g: any) => g.id === 'sooner_a');
    expect(a.grain).toBe('month');
    expect(a.values).toEqual([
      { period: '2026-06-01', value: 25 },
      { period: '2026-07-01', value: 18 },
      { period: '2026-08-01', value: 14 },
      { period: '2026-09-01', value: null },
      { period: '2026-10-01', value: 12 },
    ]);
    expect(a.milestones.map((m: any) => [m.date, m.period, m.state, m.value])).toEqual([
      ['2026-07-15', '2026-07-01', 'met', 18],
      ['2026-08-31', '2026-08-01', 'missed', 14],
      // September has two subjects of pa: withheld, so nothing to judge.
      ['2026-09-30', '2026-09-01', 'no_data', null],
      // Open: 12 misses 10, but the trend of the last three values (18, 14, 12) reaches it by December.
      ['2026-12-31', '2026-12-01', 'on_track', 12],
      ['2027-02-28', '2027-02-01', 'on_track', 12],
    ]);
    expect(a.state).toBe('on_track');
    expect(a.nextMilestone.date).toBe('2026-12-31');
    expect(a.baseline).toBe(25);
    expect(a.current).toBe(12);
    expect(a.progress).toBeCloseTo((12 - 25) / (8 - 25), 4);
    expect(a.targetLine).toEqual([
      { date: '2026-07-15', target: 20 },
      { date: '2026-08-31', target: 12 },
      { date: '2026-09-30', target: 13 },
      { date: '2026-12-31', target: 10 },
      { date: '2027-02-28', target: 8 },
    ]);
    expect(a.assumptions).toEqual(['The new depot opens in August.']);
    // Failures of pa above 0.5 in September (0.6) and October (0.8): the exit criterion is met.
    expect(a.exitCriteria).toHaveLength(1);
    expect(a.exitCriteria[0]).toMatchObject({
      met: true,
      values: [
        { period: '2026-09-01', value: 0.6 },
        { period: '2026-10-01', value: 0.8 },
      ],
    });
    const b = r.body.goals.find((g: any) => g.id === 'sooner_b');
    // Flat at 5 and at least 8 wanted: at risk, no progress from the baseline of 5.
    expect(b.milestones.map((m: any) => m.state)).toEqual(['at_risk', 'at_risk']);
    expect(b.progress).toBe(0);
  });

  it('every judgement names the series that reproduces it at its snapshot', async () => {
    const token = await t.token('pa', 'analyst');
    const r = await get('/v1/goals', token);
    const judgements = [
      ...r.body.goals.flatMap((g: any) => [g, ...g.exitCriteria]),
      ...r.body.stage.criteria.filter((c: any) => c.evidence),
    ];
    expect(judgements.length).toBeGreaterThanOrEqual(5);
    for (const j of judgements) {
      const e = j.evidence;
      const q = new URLSearchParams({ grain: e.grain, from: e.from, to: e.to, snapshot: String(e.snapshot) });
      if (e.by) q.set('by', e.by);
      const s = await get(`/v1/kpis/${e.kpi}/series?${q}`, token);
      expect(s.status).toBe(200);
      expect(s.body.digest).toBe(e.digest);
      // The values judged are the series' own cells of the scope.
      const group = j.scope === 'combined' ? null : j.scope;
      for (const v of j.values) {
        const cell = s.body.cells.find((c: any) => c.period === v.period && c.group === group);
        expect(cell?.value ?? null).toBe(v.value);
      }
    }
  });

  it('the stage gate: each criterion with its evidence; a need-to-know criterion is left out for those who may not read it', async () => {
    const analyst = await get('/v1/goals', await t.token('pb', 'analyst'));
    const stage = analyst.body.stage;
    expect(stage).toMatchObject({ current: 'proof_of_concept', next: 'field_test' });
    // Combined delay at most 30 in September and October: October's 12.3 would pass, but the
    // combined September holds pa's two subjects (a small part) and is withheld, so it cannot count.
    expect(stage.criteria[0].values).toEqual([
      { period: '2026-09-01', value: null },
      { period: '2026-10-01', value: 12.3 },
    ]);
    expect(stage.criteria.map((c: any) => [c.kpi, c.met])).toEqual([
      ['delay', false],
      // pa's failures 0.6 and 0.8: not below 0.5
      ['fails', false],
    ]);
    // audit is need-to-know: its criterion is left out for pb's analyst (not even the KPI's id),
    // and whether the gate is passed, which depends on it, is not said.
    expect(analyst.text).not.toContain('audit');
    expect(stage.ready).toBeNull();
    // Nor does the agreement as pb's analyst reads it name the goal or the criterion on it.
    const served = await get('/v1/agreement', await t.token('pb', 'analyst'));
    expect(served.body.agreement.goals.map((g: any) => g.id)).toEqual(['sooner_a', 'sooner_b']);
    expect(served.text).not.toContain('audit');
    expect(analyst.body.goals.map((g: any) => g.id)).toEqual(['sooner_a', 'sooner_b']);

    const steering = await get('/v1/goals', await t.token('pc', 'steering'));
    expect(steering.body.stage.criteria[2].met).toBe(true);
    expect(steering.body.stage.ready).toBe(false);
    expect(steering.body.goals.map((g: any) => g.id)).toEqual(['sooner_a', 'sooner_b', 'audits']);
  });

  it('the same bytes for every partner; a snapshot keeps its answer after new data lands', async () => {
    const before = await get('/v1/goals', await t.token('pa', 'analyst'));
    const other = await get('/v1/goals', await t.token('pc', 'analyst'));
    expect(other.text).toBe(before.text);
    expect(before.body.digest).toBe(
      canonicalDigest({ intent: before.body.intent, stage: before.body.stage, goals: before.body.goals }),
    );
    // pa's September gets a third subject: the withheld month becomes disclosed at the next snapshot.
    const snap = await push(
      'pa',
      month('delay', '2026-09', 1, () => 16, 'late'),
    );
    expect(snap).toBeGreaterThan(before.body.snapshot);
    const again = await get(`/v1/goals?snapshot=${before.body.snapshot}`, await t.token('pa', 'analyst'));
    expect(again.text).toBe(before.text);
    expect((await get('/v1/goals?snapshot=abc', await t.token('pa', 'analyst'))).status).toBe(400);
    expect((await get('/v1/goals?snapshot=999999', await t.token('pa', 'analyst'))).status).toBe(400);
    expect((await get('/v1/goals?format=pdf', await t.token('pa', 'analyst'))).status).toBe(400);
    expect((await get('/v1/goals')).status).toBe(401);
  });
});

describe('goal notices', () => {
  it('a missed milestone and a met exit criterion notify the owners and the steering committee once', async () => {
    const alerts = t.app.alerts!;
    // Evaluate after the batches and twice more on the schedule: still one notice per judgement.
    for (let i = 0; i < 3; i++) {
      alerts.engine.requestAll();
      await alerts.engine.idle();
    }
    await alerts.notifier.settle();
    const goalMail = () => mail.messages.filter((m) => /Milestone missed|Exit criterion met/.test(m.subject ?? ''));
    await mail.waitFor(() => goalMail().length >= 8);
    await hooks.waitFor(() => hooks.delivered.length >= 4);
    const sent = goalMail()
      .map((m) => `${m.subject} → ${(m.to as any).value[0].address}`)
      .sort();
    // sooner_a missed its August milestone (14 > 12), and its September one (13) once the late
    // third subject disclosed September (14); its exit criterion (pa's failures above 0.5 in two
    // months) is met, and so is its need-to-know one (pa's audit checks at least 0.5 in October),
    // whose recipients may read it. sooner_b has no closed milestone; audits none either.
    expect(sent).toEqual([
      '[Parity] Exit criterion met: A delivers within 8 hours (pa) → chair@example.org',
      '[Parity] Exit criterion met: A delivers within 8 hours (pa) → chair@example.org',
      '[Parity] Exit criterion met: A delivers within 8 hours (pa) → olga@pa.example',
      '[Parity] Exit criterion met: A delivers within 8 hours (pa) → olga@pa.example',
      '[Parity] Milestone missed: A delivers within 8 hours (pa) — 2026-08-31 → chair@example.org',
      '[Parity] Milestone missed: A delivers within 8 hours (pa) — 2026-08-31 → olga@pa.example',
      '[Parity] Milestone missed: A delivers within 8 hours (pa) — 2026-09-30 → chair@example.org',
      '[Parity] Milestone missed: A delivers within 8 hours (pa) — 2026-09-30 → olga@pa.example',
    ]);
    const text = goalMail().find((m) => m.subject?.includes('2026-08-31'))!.text!;
    expect(text).toContain('Value: 14 hours (period from 2026-08-01)');
    expect(text).toMatch(
      /Reproduce: .*\/v1\/kpis\/delay\/series\?grain=month&from=2026-06-01&to=2026-11-23&by=partner&snapshot=\d+/,
    );
    const bodies = hooks.delivered.map((h) => JSON.parse(h.body));
    expect(bodies.map((b) => b.type).sort()).toEqual([
      'goal.exit_criterion_met',
      'goal.exit_criterion_met',
      'goal.milestone_missed',
      'goal.milestone_missed',
    ]);
    expect(hooks.delivered.every((h) => typeof h.headers['webhook-signature'] === 'string')).toBe(true);
    const missed = bodies.find((b) => b.data.milestone?.date === '2026-08-31').data;
    expect(missed).toMatchObject({
      goal: { id: 'sooner_a' },
      milestone: { date: '2026-08-31', target: 12, value: 14 },
    });

    // The notifications list: pa's people see the goal notices to pa (but not the one whose
    // criterion is on the need-to-know KPI); pb's see none of them.
    const list = async (partner: string, role: 'analyst' | 'steering') =>
      (await get('/v1/notifications', await t.token(partner, role))).body.notifications.filter((n: any) =>
        n.event.startsWith('goal.'),
      );
    const pa = await list('pa', 'analyst');
    expect(pa.map((n: any) => `${n.event}:${n.channel}`).sort()).toEqual([
      'goal.exit_criterion_met:email',
      'goal.exit_criterion_met:webhook',
      'goal.milestone_missed:email',
      'goal.milestone_missed:email',
      'goal.milestone_missed:webhook',
      'goal.milestone_missed:webhook',
    ]);
    expect(pa.every((n: any) => n.factSheet === null && n.goalNotice.goal.id === 'sooner_a')).toBe(true);
    expect(JSON.stringify(pa)).not.toContain('audit');
    expect(await list('pb', 'analyst')).toEqual([]);
    expect((await list('pc', 'steering')).length).toBe(4);
    // The audit log: the notice entries naming the need-to-know KPI are kept from pa's analyst.
    const auditOf = async (partner: string, role: 'analyst' | 'steering') =>
      (await get('/v1/audit?limit=1000', await t.token(partner, role))).body.entries.filter((e: any) =>
        String(e.action).startsWith('goal.'),
      );
    const seenByAnalyst = await auditOf('pa', 'analyst');
    expect(seenByAnalyst.map((e: any) => e.action).sort()).toEqual([
      'goal.exit_criterion_met',
      'goal.milestone_missed',
      'goal.milestone_missed',
    ]);
    expect(JSON.stringify(seenByAnalyst)).not.toContain('"audit"');
    expect((await auditOf('pc', 'steering')).length).toBe(4);
  });
});

describe('the monthly review', () => {
  it('is one document for every partner, its figures those the API serves at its snapshot', async () => {
    const a = await get('/v1/reviews/2026-10', await t.token('pa', 'analyst'));
    expect(a.status, a.text).toBe(200);
    const b = await get('/v1/reviews/2026-10', await t.token('pb', 'analyst'));
    expect(b.text).toBe(a.text);
    const r = a.body;
    const { digest, ...body } = r;
    expect(digest).toBe(canonicalDigest(body));
    expect(r).toMatchObject({
      month: '2026-10',
      from: '2026-10-01',
      to: '2026-10-31',
      intent: 'Sooner and fewer failures.',
    });
    // The need-to-know KPI, its goal and its gate criterion stay out of the shared review.
    expect(r.kpis.map((k: any) => k.id)).toEqual(['delay', 'fails']);
    expect(a.text).not.toContain('audit');
    expect(r.stage.ready).toBeNull();
    const token = await t.token('pa', 'analyst');
    const snap = r.snapshot;
    for (const k of r.kpis) {
      const bands = (await get(`/v1/kpis/${k.id}/bands?from=2026-10-01&to=2026-10-31&snapshot=${snap}`, token)).body
        .bands;
      const series = (
        await get(
          `/v1/kpis/${k.id}/series?grain=month&by=partner&from=2026-09-01&to=2026-10-31&snapshot=${snap}`,
          token,
        )
      ).body;
      const combined = (
        await get(`/v1/kpis/${k.id}/series?grain=month&from=2026-09-01&to=2026-10-31&snapshot=${snap}`, token)
      ).body;
      for (const s of k.scopes) {
        const group = s.scope === 'combined' ? null : s.scope;
        const mine = bands.filter((x: any) => x.group === group);
        expect(s.periods, `${k.id} ${s.scope}`).toBe(mine.length);
        const cells = (group === null ? combined : series).cells.filter((c: any) => c.group === group);
        const at = (p: string) => cells.find((c: any) => c.period === p)?.value ?? null;
        expect(s.month, `${k.id} ${s.scope}`).toBe(at('2026-10-01'));
        expect(s.previousMonth, `${k.id} ${s.scope}`).toBe(at('2026-09-01'));
        const disclosed = mine.filter((x: any) => at(x.period) !== null);
        expect(s.disclosed).toBe(disclosed.length);
        expect(s.inBand).toBe(disclosed.filter((x: any) => !x.outside).length);
      }
    }
    // The goals as GET /v1/goals judges them at the review's snapshot (both in November): the same
    // states and values; the review's evidence ends at the month's end, and reproduces too.
    const goals = (await get(`/v1/goals?snapshot=${snap}`, token)).body;
    const sansEvidence = (g: any) => ({ ...g, evidence: { ...g.evidence, to: null, digest: null } });
    expect(r.goals.map(sansEvidence)).toEqual(goals.goals.filter((g: any) => g.kpi !== 'audit').map(sansEvidence));
    for (const g of r.goals) {
      const e = g.evidence;
      const q = new URLSearchParams({ grain: e.grain, from: e.from, to: e.to, snapshot: String(e.snapshot) });
      if (e.by) q.set('by', e.by);
      expect((await get(`/v1/kpis/${e.kpi}/series?${q}`, token)).body.digest).toBe(e.digest);
    }
    const html = await fetch(`${t.url}/v1/reviews/2026-10?format=html`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(html.headers.get('content-type')).toMatch(/^text\/html/);
    const page = await html.text();
    for (const title of ['Delay', 'Failures', 'A delivers within 8 hours', r.digest]) expect(page).toContain(title);
    const text = await (
      await fetch(`${t.url}/v1/reviews/2026-10`, {
        headers: { authorization: `Bearer ${token}`, accept: 'text/plain' },
      })
    ).text();
    expect(text).toContain(`Digest ${r.digest}`);
    expect(text).toContain('KPIS AGAINST THEIR BANDS');
  });

  it('is kept: new data does not change a month already reviewed, and it is listed', async () => {
    const token = await t.token('pc', 'analyst');
    const before = await get('/v1/reviews/2026-10', token);
    await push(
      'pc',
      month('delay', '2026-10', 3, () => 99, 'review-late'),
    );
    const after = await get('/v1/reviews/2026-10', token);
    expect(after.text).toBe(before.text);
    const list = (await get('/v1/reviews', token)).body.reviews;
    expect(list).toEqual([
      expect.objectContaining({ month: '2026-10', digest: before.body.digest, snapshot: before.body.snapshot }),
    ]);
  });

  it('refuses a month that is not closed or not a month, a format it does not render, and no token', async () => {
    const token = await t.token('pa', 'analyst');
    const cases: [string, string][] = [
      ['/v1/reviews/2026-11', 'params.month'],
      ['/v1/reviews/2027-01', 'params.month'],
      ['/v1/reviews/2026-13', 'params.month'],
      ['/v1/reviews/2023-10', 'params.month'],
      ['/v1/reviews/26-10', 'params.month'],
      ['/v1/reviews/2026-10?format=docx', 'querystring.format'],
      ['/v1/reviews/2026-10?month=2026-09', 'querystring'],
    ];
    for (const [path, field] of cases) {
      const r = await get(path, token);
      expect(r.status, path).toBe(400);
      expect(r.body.field ?? JSON.stringify(r.body), path).toContain(field);
    }
    expect((await get('/v1/reviews/2026-10')).status).toBe(401);
    expect((await get('/v1/reviews')).status).toBe(401);
  });
});

describe('goals in agreement changes', () => {
  const call = async (token: string, document: string) => {
    const res = await fetch(`${t.url}/v1/agreement/proposals`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ document, reason: 'goals' }),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('a bad goal, stage or criterion is refused with 400 naming its field', async () => {
    const admin = await t.token('pa', 'admin');
    const cases: [string, string, string][] = [
      ['    kpi: delay\n    scope: pa\n    direction', '    kpi: nope\n    scope: pa\n    direction', 'goals[0].kpi'],
      ['scope: pa\n    direction: at_most', 'scope: pz\n    direction: at_most', 'goals[0].scope'],
      ['due: 2027-02-28', 'due: 2026-05-01', 'goals[0].due'],
      ['due: 2027-02-28', 'due: 2027-02-30', 'goals[0].due'],
      ['{ date: 2026-08-31, target: 12 }', '{ date: 2026-07-01, target: 12 }', 'goals[0].milestones[1].date'],
      ['direction: at_most', 'direction: down', 'goals[0].direction'],
      ['current: proof_of_concept', 'current: pilot', 'stage.current'],
      [
        '{ kpi: delay, grain: month, atMost: 30, periods: 2 }',
        '{ kpi: delay, grain: week, atMost: 30 }',
        'stage.next[0].grain',
      ],
      [
        '{ kpi: delay, grain: month, atMost: 30, periods: 2 }',
        '{ kpi: delay, grain: month, periods: 2 }',
        'stage.next[0]',
      ],
      [
        '{ kpi: delay, grain: month, atMost: 30, periods: 2 }',
        '{ kpi: delay, grain: month, atMost: 3, above: 1 }',
        'stage.next[0]',
      ],
      [
        'owners: { pa: { name: Dpo, email: dpo@pa.example } }',
        'owners: { pa: { name: Bob, email: bob@pa.example } }',
        'goals[2].owners.pa.email',
      ],
      ['owners: { pb: { name: Bea, email: bea@pb.example } }', 'owners: {}', 'goals[1].owners'],
      ['  - id: sooner_b', '  - id: sooner_a', 'goals[1].id'],
    ];
    for (const [from, to, field] of cases) {
      expect(active.includes(from), from).toBe(true);
      const r = await call(admin, active.replace(from, to));
      expect(r.status, `${to}: ${JSON.stringify(r.body)}`).toBe(400);
      expect(JSON.stringify(r.body), to).toContain(field);
    }
  });

  it('the diff names each goal change', async () => {
    const doc = active
      .replace('{ date: 2026-12-31, target: 10 }', '{ date: 2026-12-31, target: 11 }')
      .replace('title: B at least 9', 'title: B at least nine')
      .replace('current: proof_of_concept', 'current: field_test');
    const r = await call(await t.token('pa', 'admin'), doc);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const texts = r.body.changes.map((c: any) => c.text);
    expect(texts).toEqual(
      expect.arrayContaining([
        'goal sooner_a: milestones.2026-12-31.target 10 → 11',
        'goal sooner_b: title B at least 9 → B at least nine',
        'stage.current: proof_of_concept → field_test',
      ]),
    );
    expect(r.body.changes.every((c: any) => !c.loosensPrivacy)).toBe(true);
  });
});
