// The steering committee (issue #15) through the HTTP API, on an agreement of this test's own:
// the rotating chair; escalation drills that run the real chain (owner told by e-mail and a signed
// webhook verified with the standardwebhooks package, escalation to the committee naming its
// chair) marked as drills everywhere and touching no KPI state nor incident; decision records that
// are append-only and superseded, visible to every partner except where they concern a
// need-to-know KPI; bad bodies → 400 naming the field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIncident } from '../../services/alerts/incident-repository.js';
import { createToken } from '../../services/governance/token-repository.js';
import type { TestClock } from '../../services/platform/clock.js';
import { HookReceiver, MailCatcher } from '../helpers/receivers.js';
import { runParity } from '../helpers/spawn-room.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

let receiver: HookReceiver;
const agreement = () => `
partnership: { id: steer-test, title: Steering test, timezone: Europe/Berlin }
partners:
  - { id: pa, name: Partner A }
  - { id: pb, name: Partner B }
defaults: { minGroupSize: 3 }
twoPartyConsent: true
steering:
  - { name: Ada Alder, email: ada@steer.example }
  - { name: Ben Birch, email: ben@steer.example }
  - { name: Cy Cedar, email: cy@steer.example }
chair: { every: P1M, from: 2026-01-05, order: [ben@steer.example, ada@steer.example] }
serviceLevels:
  maintenanceWindows:
    - { partners: [pb], from: 2026-11-25T10:00:00Z, to: 2026-11-25T11:00:00Z, reason: pb upgrades its mail relay }
kpis:
  - id: delay
    title: Delay
    unit: hours
    subject: order
    measure: avg
    grains: [day, week]
    disclosure: partnership
    breakdown: per_partner
    band: { upper: 100 }
    evaluate: { grain: week }
    freshness: { every: P1D, grace: PT6H }
    owners:
      pa: { name: Olga, email: olga@pa.example, webhook: '${receiver.url('/pa')}' }
      pb: { name: Pete, email: pete@pb.example }
    escalation: { ackWithin: P2D }
  - id: joint
    title: Joint score
    unit: score
    subject: survey
    measure: avg
    grains: [week]
    disclosure: partnership
    breakdown: combined
    band: { lower: 1 }
    evaluate: { grain: week }
    freshness: { every: P7D, grace: P2D }
    owners: { pa: { name: Olga, email: olga@pa.example } }
    escalation: { ackWithin: P2D }
  - id: audit
    title: Audit checks
    unit: share
    subject: control
    measure: rate
    range: [0, 1]
    grains: [week]
    disclosure: need_to_know
    needToKnow: [dpo@pa.example]
    breakdown: per_partner
    band: { lower: 0 }
    evaluate: { grain: week }
    freshness: { every: P7D, grace: P2D }
    owners: { pa: { name: Dora, email: dora@pa.example } }
    escalation: { ackWithin: P2D }
`;

let t: TestRoom;
let dir: string;
let mail: MailCatcher;
const tokens: Record<string, string> = {};

async function call(method: string, path: string, who: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${t.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${tokens[who]}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** What a drill must leave alone: every KPI's state and every incident, as partners read them. */
async function kpiStatesAndIncidents(who: string) {
  const kpis = (await call('GET', '/v1/kpis', who)).body.kpis.map((k: any) => ({ id: k.id, scopes: k.scopes }));
  const incidents = (await call('GET', '/v1/incidents?limit=500', who)).body.incidents;
  return { kpis, incidents };
}

async function evaluate(): Promise<void> {
  t.app.alerts!.engine.requestAll();
  await t.app.alerts!.engine.idle();
}

async function waitFor(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    t.app.alerts!.notifier.kick();
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parity-steering-'));
  receiver = await new HookReceiver().start();
  const file = join(dir, 'agreement.yaml');
  writeFileSync(file, agreement());
  mail = await new MailCatcher().start();
  t = await startTestRoom({ agreementFile: file, env: { SMTP_URL: mail.url } });
  const named = async (
    key: string,
    partner: string | null,
    role: 'analyst' | 'owner' | 'steering' | 'admin',
    name: string,
  ) => (tokens[key] = (await createToken(t.room.control.db, { partnerId: partner, role, name }, t.clock.now())).token);
  await named('pa', 'pa', 'analyst', 'anna@pa.example');
  await named('pb', 'pb', 'analyst', 'bea@pb.example');
  await named('dpo', 'pa', 'analyst', 'dpo@pa.example');
  await named('olga', 'pa', 'owner', 'olga@pa.example');
  await named('pete', 'pb', 'owner', 'pete@pb.example');
  await named('adminPa', 'pa', 'admin', 'admin@pa.example');
  await named('ada', 'pb', 'steering', 'ada@steer.example');
}, 120_000);

afterAll(async () => {
  await t?.close();
  await mail?.close();
  await receiver?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the committee', () => {
  it("names today's chair from the rotation, and who follows", async () => {
    // The test clock stands at 2026-11-23: ten monthly terms since 2026-01-05, so the first in order again.
    const r = await call('GET', '/v1/steering', 'pb');
    expect(r.status).toBe(200);
    expect(r.body.chair).toMatchObject({
      name: 'Ben Birch',
      email: 'ben@steer.example',
      since: '2026-11-05',
      until: '2026-12-05',
      next: { name: 'Ada Alder' },
    });
    expect(r.body.members.filter((m: any) => m.chair).map((m: any) => m.email)).toEqual(['ben@steer.example']);
    expect(r.body.rotation).toMatchObject({ every: 'P1M', from: '2026-01-05' });
    // A month later the next in order chairs.
    (t.clock as TestClock).advance(14 * 86_400_000);
    try {
      expect((await call('GET', '/v1/steering', 'pa')).body.chair).toMatchObject({
        email: 'ada@steer.example',
        since: '2026-12-05',
        until: '2027-01-05',
        next: { email: 'ben@steer.example' },
      });
    } finally {
      (t.clock as TestClock).advance(-14 * 86_400_000);
    }
  });
});

describe('escalation drills', () => {
  let drillId: string;

  it('run the real chain — owner told (e-mail, signed webhook), escalated to the committee naming its chair — marked DRILL, touching no KPI state nor incident', async () => {
    const before = await kpiStatesAndIncidents('pa');
    const started = await call('POST', '/v1/drills', 'ada', { kpi: 'delay', scope: 'pa', ackWithin: 'PT5M' });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    drillId = started.body.id;
    expect(started.body).toMatchObject({
      drill: true,
      state: 'running',
      kpi: { id: 'delay' },
      scope: 'pa',
      startedBy: 'ada@steer.example',
      owners: [{ partner: 'pa', name: 'Olga' }],
      escalatedAt: null,
    });
    expect(Date.parse(started.body.ackDueAt) - Date.parse(started.body.startedAt)).toBe(300_000);

    // The owner's webhook: signed per Standard Webhooks with the secret pa's admin reads.
    await receiver.waitFor(() => receiver.delivered.length >= 1);
    const secret = (await call('GET', '/v1/webhooks', 'adminPa')).body.webhooks[0].secret as string;
    const hook = receiver.delivered[0]!;
    const verified = new Webhook(secret).verify(hook.body, hook.headers as Record<string, string>) as any;
    expect(verified.type).toBe('incident.drill.opened');
    expect(verified.data).toMatchObject({ drill: true, id: drillId, kpi: { id: 'delay' }, scope: 'pa' });
    // The owner's e-mail: DRILL in the subject and a banner before anything else.
    await waitFor(
      () => mail.messages.some((m) => m.to && JSON.stringify(m.to).includes('olga@pa.example')),
      'owner mail',
    );
    const ownerMail = mail.messages.find((m) => JSON.stringify(m.to).includes('olga@pa.example'))!;
    expect(ownerMail.subject).toMatch(/^\[Parity\] \[DRILL\] Incident: Delay — pa$/);
    expect(ownerMail.text).toMatch(/^DRILL — an exercise/);
    expect(ownerMail.html).toContain('DRILL — an exercise');
    expect(ownerMail.headers.get('x-parity-drill')).toBe(drillId);
    // The mail is stored before its delivery is recorded: the notifier settles first.
    await t.app.alerts!.notifier.settle();
    const told = (await call('GET', `/v1/drills/${drillId}`, 'pa')).body;
    expect(told.notifiedAt).not.toBeNull();

    // Nobody acknowledges: past the deadline the scheduled evaluation escalates to every member.
    (t.clock as TestClock).advance(6 * 60_000);
    await evaluate();
    await waitFor(
      () => ['ada', 'ben', 'cy'].every((n) => mail.messages.some((m) => JSON.stringify(m.to).includes(`${n}@steer`))),
      'escalation mails',
    );
    const escalation = mail.messages.find((m) => JSON.stringify(m.to).includes('cy@steer.example'))!;
    expect(escalation.subject).toMatch(/^\[Parity\] \[DRILL\] Escalated: Delay/);
    expect(escalation.text).toContain('Chair of the steering committee: Ben Birch <ben@steer.example>');
    const escalated = (await call('GET', `/v1/drills/${drillId}`, 'pb')).body;
    expect(escalated).toMatchObject({ state: 'escalated', chair: { name: 'Ben Birch' } });
    expect(escalated.result.escalateSeconds).toBe(360);
    // Once only.
    await evaluate();
    expect(mail.messages.filter((m) => /Escalated/.test(m.subject ?? '')).length).toBe(3);

    // The owner acknowledges: the drill ends with its times recorded.
    (t.clock as TestClock).advance(60_000);
    expect((await call('POST', `/v1/drills/${drillId}/ack`, 'pete')).status).toBe(403); // pb's owner, not pa's
    const acked = await call('POST', `/v1/drills/${drillId}/ack`, 'olga');
    expect(acked.status, JSON.stringify(acked.body)).toBe(200);
    expect(acked.body).toMatchObject({ state: 'acknowledged', acknowledgedBy: 'olga@pa.example' });
    expect(acked.body.result).toMatchObject({ acknowledgeSeconds: 420, escalateSeconds: 360 });
    expect((await call('POST', `/v1/drills/${drillId}/ack`, 'olga')).status).toBe(409);

    // KPI states and incidents are what they were; the audit log marks every step a drill.
    expect(await kpiStatesAndIncidents('pa')).toEqual(before);
    const audit = (await call('GET', '/v1/audit?limit=500', 'ada')).body.entries as any[];
    const steps = audit.filter((e) => e.target === drillId).map((e) => [e.action, e.details.drill]);
    expect(steps.length).toBeGreaterThanOrEqual(4);
    expect(steps.map((s) => s[0])).toEqual(
      expect.arrayContaining(['drill.started', 'drill.notified', 'drill.escalated', 'drill.acknowledged']),
    );
    expect(steps.every((s) => s[1] === true)).toBe(true);
    // The notifications list shows them as drills.
    const notes = (await call('GET', '/v1/notifications', 'olga')).body.notifications as any[];
    const opened = notes.filter((n) => n.event === 'incident.drill.opened');
    expect(opened.length).toBeGreaterThan(0);
    expect(opened.every((n) => n.drill?.drill === true && n.factSheet === null)).toBe(true);
    expect((await call('GET', '/v1/audit/verify', 'ada')).body).toMatchObject({ ok: true });
  });

  it('bad starts get a precise 4xx; only steering starts or ends one', async () => {
    for (const [body, field] of [
      [{ kpi: 'delay', scope: 'nowhere' }, 'body.scope'],
      [{ kpi: 'joint', scope: 'pa' }, 'body.scope'],
      [{ kpi: 'delay', ackWithin: 'PT10S' }, 'body.ackWithin'],
      [{ kpi: 'delay', ackWithin: 'P30D' }, 'body.ackWithin'],
      [{ kpi: 'delay', ackWithin: 'soon' }, 'body.ackWithin'],
      [{ kpi: 'delay', extra: 1 }, 'body.extra'],
      [{ scope: 'pa' }, 'body.kpi'],
    ] as const) {
      const r = await call('POST', '/v1/drills', 'ada', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.field, JSON.stringify(r.body)).toBe(field);
    }
    expect((await call('POST', '/v1/drills', 'ada', { kpi: 'nope' })).status).toBe(404);
    expect((await call('POST', '/v1/drills', 'olga', { kpi: 'delay', scope: 'pa' })).status).toBe(403);
    expect((await call('POST', '/v1/drills', 'adminPa', { kpi: 'delay', scope: 'pa' })).status).toBe(403);
    // Only the owner acknowledges: a member ends a drill, it does not answer for the owner.
    const mine = await call('POST', '/v1/drills', 'ada', { kpi: 'delay', scope: 'pa' });
    expect(mine.status, JSON.stringify(mine.body)).toBe(201);
    expect((await call('POST', `/v1/drills/${mine.body.id}/ack`, 'ada')).status).toBe(403);
    const endedMine = await call('POST', `/v1/drills/${mine.body.id}/end`, 'ada');
    expect(endedMine.body.state, JSON.stringify(endedMine.body)).toBe('ended');
    const one = await call('POST', '/v1/drills', 'ada', { kpi: 'joint' });
    expect(one.status).toBe(201);
    expect((await call('POST', '/v1/drills', 'ada', { kpi: 'joint' })).status).toBe(409);
    expect((await call('POST', `/v1/drills/${one.body.id}/end`, 'olga')).status).toBe(403);
    const ended = await call('POST', `/v1/drills/${one.body.id}/end`, 'ada');
    expect(ended.body).toMatchObject({ state: 'ended', endedBy: 'ada@steer.example', acknowledgedAt: null });
    expect((await call('GET', '/v1/drills/drl_nothere', 'pa')).status).toBe(404);
    expect((await call('GET', '/v1/drills/inc_x', 'pa')).body.field).toBe('params.id');
  });

  it('on a need-to-know KPI reach only its readers (list, item, notifications, audit)', async () => {
    const d = await call('POST', '/v1/drills', 'ada', { kpi: 'audit', scope: 'pa' });
    expect(d.status).toBe(201);
    for (const who of ['pb', 'pa']) {
      const list = (await call('GET', '/v1/drills', who)).body.drills as any[];
      expect(
        list.some((x) => x.kpi.id === 'audit'),
        who,
      ).toBe(false);
      expect((await call('GET', `/v1/drills/${d.body.id}`, who)).status).toBe(404);
      const notes = (await call('GET', '/v1/notifications', who)).body.notifications as any[];
      expect(JSON.stringify(notes)).not.toContain('audit');
    }
    expect(((await call('GET', '/v1/drills', 'dpo')).body.drills as any[]).some((x) => x.kpi.id === 'audit')).toBe(
      true,
    );
    // The owner's e-mail goes out; its audit entries (pa's, as Dora is pa's) are there for a
    // reader of the KPI of pa, and for no other of pa.
    await waitFor(() => mail.messages.some((m) => JSON.stringify(m.to).includes('dora@pa.example')), 'owner mail');
    const entries = async (who: string) =>
      ((await call('GET', '/v1/audit?limit=1000', who)).body.entries as any[]).filter((e) => e.target === d.body.id);
    const deadline = Date.now() + 10_000;
    while ((await entries('dpo')).every((e) => e.action !== 'notification.delivered') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await entries('dpo')).map((e) => e.action)).toEqual(
      expect.arrayContaining(['notification.delivered', 'drill.notified']),
    );
    expect(await entries('adminPa')).toEqual([]);
    expect(await entries('pa')).toEqual([]);
    await call('POST', `/v1/drills/${d.body.id}/end`, 'ada');
  });
});

describe('a drill and a maintenance window', () => {
  it("does not escalate inside the scope's window, and its time there does not count", async () => {
    const clock = t.clock as TestClock;
    clock.set('2026-11-25T09:57:00Z');
    const d = await call('POST', '/v1/drills', 'ada', { kpi: 'delay', scope: 'pb', ackWithin: 'PT5M' });
    expect(d.status, JSON.stringify(d.body)).toBe(201);
    // Three minutes ran before pb's window (10:00–11:00); two remain after it: due 11:02.
    clock.set('2026-11-25T10:30:00Z');
    await evaluate();
    expect((await call('GET', `/v1/drills/${d.body.id}`, 'pb')).body.escalatedAt).toBeNull();
    clock.set('2026-11-25T11:01:00Z');
    await evaluate();
    expect((await call('GET', `/v1/drills/${d.body.id}`, 'pb')).body.escalatedAt).toBeNull();
    clock.set('2026-11-25T11:03:00Z');
    await evaluate();
    expect((await call('GET', `/v1/drills/${d.body.id}`, 'pb')).body.escalatedAt).toBe('2026-11-25T11:03:00.000Z');
    expect((await call('POST', `/v1/drills/${d.body.id}/ack`, 'pete')).body.state).toBe('acknowledged');
  });
});

describe('decision records', () => {
  const base = {
    title: 'Count returns as failed deliveries',
    context: 'The partners counted returns differently.',
    options: ['Count them as failed', 'Leave them out'],
    decision: 'Returns count as failed deliveries from December.',
    decisionMakers: ['ada@steer.example', 'ben@steer.example'],
    date: '2026-11-20',
    consequences: 'The error rate rises by about a point.',
    agreementVersions: [1],
  };
  let first: any;

  it('are recorded by steering, read by every partner, never edited, only superseded', async () => {
    expect((await call('POST', '/v1/decisions', 'adminPa', base)).status).toBe(403);
    const made = await call('POST', '/v1/decisions', 'ada', base);
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    first = made.body;
    expect(first).toMatchObject({
      number: 1,
      title: base.title,
      options: base.options,
      decisionMakers: [
        { name: 'Ada Alder', email: 'ada@steer.example' },
        { name: 'Ben Birch', email: 'ben@steer.example' },
      ],
      supersedes: null,
      supersededBy: null,
      recordedBy: 'ada@steer.example',
    });
    for (const who of ['pa', 'pb'])
      expect((await call('GET', '/v1/decisions', who)).body.decisions.map((d: any) => d.id)).toContain(first.id);

    // No route changes or removes a record, and the database refuses it too.
    for (const method of ['PATCH', 'PUT', 'DELETE']) {
      const r = await call(
        method,
        `/v1/decisions/${first.id}`,
        'ada',
        method === 'DELETE' ? undefined : { title: 'x' },
      );
      expect(r.status, method).toBe(405);
      expect(r.body.detail).toMatch(/append-only/);
      expect(r.body.field, method).toBe('method');
    }
    await expect(
      sql`UPDATE decisions SET title = 'changed' WHERE id = ${first.id}`.execute(t.room.control.db),
    ).rejects.toThrow(/append-only/);
    await expect(sql`DELETE FROM decisions WHERE id = ${first.id}`.execute(t.room.control.db)).rejects.toThrow(
      /append-only/,
    );

    const next = await call('POST', '/v1/decisions', 'ada', {
      ...base,
      decision: 'Returns count as failed deliveries from January.',
      supersedes: first.id,
    });
    expect(next.status, JSON.stringify(next.body)).toBe(201);
    expect(next.body).toMatchObject({ number: 2, supersedes: first.id });
    const old = (await call('GET', `/v1/decisions/${first.id}`, 'pb')).body;
    expect(old).toMatchObject({ title: base.title, decision: base.decision, supersededBy: next.body.id });
    // A record is superseded once; its successor is the one to supersede.
    expect((await call('POST', '/v1/decisions', 'ada', { ...base, supersedes: first.id })).status).toBe(409);
  });

  it('concerning a need-to-know incident are seen only by its readers', async () => {
    const now = t.clock.now();
    await createIncident(t.room.control.db, {
      id: 'inc_ntk1',
      kpi: 'audit',
      scope: 'pa',
      kind: 'breach',
      state: 'open',
      opened_at: now,
      updated_at: now,
      first_period: '2026-11-16',
      period: '2026-11-16',
      grain: 'week',
      value: null,
      suppressed: true,
      band: JSON.stringify({ lower: 0 }),
      reason: 'below its band',
      snapshot: 1,
      digest: null,
      agreement_version: 1,
      freshness: JSON.stringify([]),
      ack_due_at: now,
      notified_at: null,
      acknowledged_at: null,
      acknowledged_by: null,
      escalated_at: null,
      resolved_at: null,
      resolved_by: null,
      resolution: null,
      fact_sheet: null,
    } as any);
    const made = await call('POST', '/v1/decisions', 'ada', {
      ...base,
      title: 'Audit sampling',
      incidents: ['inc_ntk1'],
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    expect((await call('GET', `/v1/decisions/${made.body.id}`, 'pb')).status).toBe(404);
    expect((await call('GET', '/v1/decisions', 'pa')).body.decisions.map((d: any) => d.id)).not.toContain(made.body.id);
    expect((await call('GET', `/v1/decisions/${made.body.id}`, 'dpo')).status).toBe(200);
    // Its successor concerns the same KPI: hidden alike.
    const next = await call('POST', '/v1/decisions', 'ada', {
      ...base,
      title: 'Audit sampling v2',
      supersedes: made.body.id,
    });
    expect(next.status).toBe(201);
    expect((await call('GET', `/v1/decisions/${next.body.id}`, 'pb')).status).toBe(404);
    expect((await call('GET', `/v1/decisions/${next.body.id}`, 'dpo')).status).toBe(200);
    // A record every partner reads cannot be superseded by one concerning a need-to-know KPI: its
    // readers would see it superseded by a record they cannot read.
    const open = await call('POST', '/v1/decisions', 'ada', { ...base, title: 'Shared' });
    const narrower = await call('POST', '/v1/decisions', 'ada', {
      ...base,
      incidents: ['inc_ntk1'],
      supersedes: open.body.id,
    });
    expect(narrower.status).toBe(400);
    expect(narrower.body.field).toBe('body.incidents');
    expect((await call('GET', `/v1/decisions/${open.body.id}`, 'pb')).body.supersededBy).toBeNull();
    // Numbered among the records each reader may see: no gap where a need-to-know record stands.
    for (const who of ['pb', 'dpo', 'ada']) {
      const numbers = ((await call('GET', '/v1/decisions', who)).body.decisions as { number: number }[]).map(
        (d) => d.number,
      );
      expect(numbers, who).toEqual(Array.from({ length: numbers.length }, (_, i) => numbers.length - i));
    }
    const all = (await call('GET', '/v1/decisions', 'ada')).body.decisions.length;
    expect((await call('GET', '/v1/decisions', 'pb')).body.decisions.length).toBeLessThan(all);
    // dpo's reading of the hidden record is in the audit log for readers of the KPI only.
    const seen = async (who: string) =>
      ((await call('GET', '/v1/audit?limit=1000', who)).body.entries as any[]).some((e) => e.target === made.body.id);
    expect(await seen('dpo')).toBe(true);
    expect(await seen('pa')).toBe(false);
    expect(await seen('adminPa')).toBe(false);
  });

  it('bad bodies → 400 naming the field; script tags come back as written (text, never HTML)', async () => {
    for (const [patch, field] of [
      [{ title: '' }, 'body.title'],
      [{ title: 'x'.repeat(201) }, 'body.title'],
      [{ context: 'a\u0000b' }, 'body.context'],
      [{ options: [] }, 'body.options'],
      [{ decisionMakers: ['someone@else.example'] }, 'body.decisionMakers.0'],
      [{ decisionMakers: ['not an e-mail'] }, 'body.decisionMakers.0'],
      [{ date: '2030-01-01' }, 'body.date'],
      [{ date: '2026-02-30' }, 'body.date'],
      [{ incidents: ['inc_nothere'] }, 'body.incidents.0'],
      [{ agreementVersions: [99] }, 'body.agreementVersions.0'],
      [{ supersedes: 'dec_nothere' }, 'body.supersedes'],
      [{ supersedes: 'x' }, 'body.supersedes'],
      [{ extra: true }, 'body.extra'],
    ] as const) {
      const r = await call('POST', '/v1/decisions', 'ada', { ...base, ...patch });
      expect(r.status, JSON.stringify(patch)).toBe(400);
      expect(r.body.field, JSON.stringify(r.body)).toBe(field);
    }
    const evil = '<script>alert(1)</script><img src=x onerror=alert(2)>';
    const r = await call('POST', '/v1/decisions', 'ada', {
      ...base,
      title: evil,
      context: evil,
      options: [evil],
      decision: evil,
      consequences: evil,
    });
    expect(r.status).toBe(201);
    const back = (await call('GET', `/v1/decisions/${r.body.id}`, 'pb')).body;
    for (const k of ['title', 'context', 'decision', 'consequences']) expect(back[k]).toBe(evil);
    expect(back.options).toEqual([evil]);
  });
});

describe('parity steering | drill | actions (through the running room)', () => {
  const parity = (args: string[], who: string) =>
    runParity(args, { DATABASE_URL: '', PARITY_URL: t.url, PARITY_TOKEN: tokens[who]! });

  it('a member shows the committee, records and supersedes a decision from a file, runs a drill; an owner acknowledges it', async () => {
    const shown = await parity(['steering', 'show'], 'pa');
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(
      'chair: Ben Birch <ben@steer.example> since 2026-11-05, until 2026-12-05; next: Ada Alder',
    );
    expect(shown.stdout).toContain('* Ben Birch');

    const file = join(dir, 'decision.yaml');
    writeFileSync(
      file,
      [
        'title: Weekly feed checks',
        'context: Feeds arrived late twice in November.',
        'options: [Weekly checks, Nothing]',
        'decision: Each partner checks its feeds every Monday.',
        'decisionMakers: [ada@steer.example]',
        'date: 2026-11-21',
        'consequences: Ten minutes a week for each partner.',
      ].join('\n'),
    );
    const made = await parity(['steering', 'decide', file], 'ada');
    expect(made.code, made.stderr).toBe(0);
    const id = /^D-\d+ (dec_[\w-]+)/.exec(made.stdout)?.[1];
    expect(id, made.stdout).toBeDefined();
    const next = await parity(['steering', 'decide', file, '--supersedes', id!], 'ada');
    expect(next.code, next.stderr).toBe(0);
    expect(next.stdout).toContain(`supersedes: ${id}`);
    const log = await parity(['steering', 'decisions'], 'pb');
    expect(log.stdout).toMatch(new RegExp(`${id}.*Weekly feed checks  \\(superseded by dec_`));
    // An analyst may not record one: the room's answer is printed, the exit code says so.
    const refused = await parity(['steering', 'decide', file], 'pa');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/403 only the steering committee records decisions/);
    writeFileSync(file, 'title: [unclosed');
    const broken = await parity(['steering', 'decide', file], 'ada');
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('cannot read');

    const started = await parity(['drill', 'start', 'delay', '--scope', 'pb', '--ack-within', 'PT10M'], 'ada');
    expect(started.code, started.stderr).toBe(0);
    const drill = /^(drl_[\w-]+)\s+DRILL\s+running/.exec(started.stdout)?.[1];
    expect(drill, started.stdout).toBeDefined();
    const acked = await parity(['drill', 'ack', drill!], 'pete');
    expect(acked.code, acked.stderr).toBe(0);
    expect(acked.stdout).toMatch(/DRILL\s+acknowledged\s+delay \(pb\)/);
    expect(acked.stdout).toContain('(pete@pb.example)');
    expect((await parity(['drill', 'list'], 'pb')).stdout).toContain(drill!);

    // An action of October's retrospective, marked done from the CLI (a POST without a body).
    const made_ = await fetch(`${t.url}/v1/retrospectives/2026-10/actions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens['ada']!}`, 'content-type': 'application/json' },
      body: JSON.stringify({ description: 'Check feeds on Mondays', owner: 'ada@steer.example', due: '2026-12-07' }),
    });
    expect(made_.status).toBe(201);
    const action = ((await made_.json()) as { id: string }).id;
    const actions = await parity(['actions', 'list', '--state', 'open'], 'pa');
    expect(actions.code, actions.stderr).toBe(0);
    expect(actions.stdout).toContain(action);
    const done = await parity(['actions', 'done', action], 'ada');
    expect(done.code, done.stderr).toBe(0);
    expect((await parity(['actions', 'list', '--state', 'done'], 'pa')).stdout).toContain(action);
    const badState = await parity(['actions', 'list', '--state', 'someday'], 'pa');
    expect(badState.code).toBe(1);
    expect(badState.stderr).toMatch(/400/);
  });
});
