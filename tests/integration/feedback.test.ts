// Annotations and comment threads (issue #15) through the HTTP API, on an agreement of this test's
// own: visible to every reader of the KPI and to no one else (need-to-know too, in threads,
// mentions and the audit log); edited only by their author with every version kept; a mention
// notifies that person once by e-mail, its text escaped; bad bodies are a 400 naming the field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import { MailCatcher } from '../helpers/receivers.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import type { TestClock } from '../../services/platform/clock.js';

const agreement = `
partnership: { id: talk-test, title: Feedback test, timezone: UTC }
partners:
  - { id: pa, name: Partner A, contacts: [{ name: Anna, email: anna@pa.example }] }
  - { id: pb, name: Partner B, contacts: [{ name: Bea, email: bea@pb.example }] }
defaults: { minGroupSize: 3 }
twoPartyConsent: true
steering:
  - { name: Chair, email: chair@example.org }
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
    owners: { pa: { name: Olga, email: olga@pa.example } }
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
goals:
  - id: sooner
    title: Deliver sooner
    kpi: delay
    direction: at_most
    target: 24
    start: 2026-06-01
    due: 2027-06-30
    owners: { pa: { name: Olga, email: olga@pa.example } }
`;

let t: TestRoom;
let dir: string;
let mail: MailCatcher;
const tokens: Record<string, string> = {};

async function call(
  method: string,
  path: string,
  who: string,
  body?: unknown,
): Promise<{ status: number; body: any; type: string; headers: Record<string, string> }> {
  const res = await fetch(`${t.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${tokens[who]}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return {
    status: res.status,
    body: await res.json(),
    type: res.headers.get('content-type') ?? '',
    headers: Object.fromEntries(res.headers),
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parity-feedback-'));
  const file = join(dir, 'agreement.yaml');
  writeFileSync(file, agreement);
  mail = await new MailCatcher().start();
  t = await startTestRoom({ agreementFile: file, env: { SMTP_URL: mail.url } });
  const named = async (
    key: string,
    partner: string | null,
    role: 'analyst' | 'steering' | 'admin' | 'operator',
    name: string,
  ) => (tokens[key] = (await createToken(t.room.control.db, { partnerId: partner, role, name }, t.clock.now())).token);
  await named('pa', 'pa', 'analyst', 'anna@pa.example');
  await named('pa2', 'pa', 'analyst', 'second@pa.example');
  await named('pb', 'pb', 'analyst', 'bea@pb.example');
  await named('dpo', 'pa', 'analyst', 'dpo@pa.example');
  await named('chair', 'pa', 'steering', 'chair@example.org');
  await named('admin', 'pa', 'admin', 'admin@pa.example');
  await named('operator', null, 'operator', 'ops');
}, 120_000);

afterAll(async () => {
  await t?.close();
  await mail?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('annotations', () => {
  it('are shown to every reader of the KPI, edited only by their author, every version kept', async () => {
    const made = await call('POST', '/v1/kpis/delay/annotations', 'pa', {
      scope: 'pa',
      from: '2026-11-09',
      to: '2026-11-13',
      text: 'Strike at our north hub',
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    expect(made.body).toMatchObject({
      kpi: 'delay',
      scope: 'pa',
      from: '2026-11-09',
      to: '2026-11-13',
      text: 'Strike at our north hub',
      author: { partner: 'pa', name: 'anna@pa.example' },
      version: 1,
    });
    const id = made.body.id;
    // pb reads it; a range that does not overlap it does not list it.
    const seen = await call('GET', '/v1/kpis/delay/annotations?from=2026-11-01&to=2026-11-30', 'pb');
    expect(seen.body.annotations).toEqual([made.body]);
    expect((await call('GET', '/v1/kpis/delay/annotations?from=2026-11-14', 'pb')).body.annotations).toEqual([]);
    // Another user (of pb, or of pa) may not edit it; its author may.
    expect((await call('PATCH', `/v1/annotations/${id}`, 'pb', { text: 'no strike' })).status).toBe(403);
    expect((await call('PATCH', `/v1/annotations/${id}`, 'pa2', { text: 'no strike' })).status).toBe(403);
    const edited = await call('PATCH', `/v1/annotations/${id}`, 'pa', { text: 'Strike at our north hub (Mon–Fri)' });
    expect(edited.status).toBe(200);
    expect(edited.body).toMatchObject({ version: 2, text: 'Strike at our north hub (Mon–Fri)', from: '2026-11-09' });
    const history = await call('GET', `/v1/annotations/${id}/history`, 'pb');
    expect(history.body.versions.map((v: any) => [v.version, v.text])).toEqual([
      [1, 'Strike at our north hub'],
      [2, 'Strike at our north hub (Mon–Fri)'],
    ]);
    // Audited: created and edited, with the KPI named.
    const audit = await call('GET', '/v1/audit?limit=200', 'admin');
    const actions = audit.body.entries.filter((e: any) => e.target === id).map((e: any) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['annotation.created', 'annotation.edited']));
  });

  it('a need-to-know annotation and its thread never reach a reader without need-to-know', async () => {
    const made = await call('POST', '/v1/kpis/audit/annotations', 'dpo', {
      scope: 'pa',
      from: '2026-11-02',
      text: 'Auditor on site',
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const id = made.body.id;
    // The steering committee reads need-to-know KPIs; the DPO comments and mentions the chair.
    const c = await call('POST', `/v1/threads/annotation/${id}`, 'dpo', { text: 'FYI @chair@example.org' });
    expect(c.status, JSON.stringify(c.body)).toBe(201);
    expect(c.body.notified).toBe(1);
    // Mentioning a contact who may not read the KPI is refused, naming the field: no e-mail goes out.
    const refused = await call('POST', `/v1/threads/annotation/${id}`, 'dpo', { text: 'cc @bea@pb.example' });
    expect(refused.status).toBe(400);
    expect(refused.body.field).toBe('body.text');
    for (const who of ['pb', 'pa']) {
      expect((await call('GET', '/v1/kpis/audit/annotations', who)).status, who).toBe(404);
      expect((await call('GET', `/v1/annotations/${id}/history`, who)).status, who).toBe(404);
      expect((await call('GET', `/v1/threads/annotation/${id}`, who)).status, who).toBe(404);
      expect((await call('POST', `/v1/threads/annotation/${id}`, who, { text: 'hello?' })).status, who).toBe(404);
      expect((await call('PATCH', `/v1/annotations/${id}`, who, { text: 'x' })).status, who).toBe(404);
    }
    expect((await call('GET', `/v1/threads/annotation/${id}`, 'chair')).body.comments).toHaveLength(1);
    // The notifications and the audit log do not name it to pb.
    const audit = await call('GET', '/v1/audit?limit=500', 'pb');
    expect(audit.status).toBe(200);
    expect(JSON.stringify(audit.body)).not.toContain(id);
    expect(JSON.stringify(audit.body)).not.toContain(c.body.comment.id);
    await mail.waitFor(() => mail.messages.some((m) => m.to && JSON.stringify(m.to).includes('chair@example.org')));
    expect(
      mail.messages.every((m) => !JSON.stringify(m.to).includes('bea@pb.example') || !m.text?.includes('Auditor')),
    ).toBe(true);
  });

  it('bad bodies and ids get a 400 naming the field, and nothing lands', async () => {
    const before = (await call('GET', '/v1/kpis/delay/annotations', 'pa')).body.annotations.length;
    const cases: [unknown, string][] = [
      [{ from: '2026-11-01' }, 'text'],
      [{ from: '2026-11-01', text: '   ' }, 'text'],
      [{ from: '2026-11-01', text: 'x'.repeat(2001) }, 'text'],
      [{ from: '2026-11-01', text: 'bell\u0007' }, 'text'],
      [{ from: '2026-11-31', text: 'x' }, 'from'],
      [{ from: 'yesterday', text: 'x' }, 'from'],
      [{ from: '2026-11-05', to: '2026-11-01', text: 'x' }, 'to'],
      [{ from: '2026-11-01', text: 'x', colour: 'red' }, 'colour'],
      [{ scope: 'pz', from: '2026-11-01', text: 'x' }, 'scope'],
      ['{"from": "2026-11-01", "text": ', 'body'],
    ];
    for (const [body, field] of cases) {
      const r = await call('POST', '/v1/kpis/delay/annotations', 'pa', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.type).toContain('application/problem+json');
      expect(JSON.stringify(r.body), JSON.stringify(body)).toContain(field);
    }
    // A partner's own series on a KPI agreed combined only does not exist.
    const combined = await call('POST', '/v1/kpis/joint/annotations', 'pa', {
      scope: 'pa',
      from: '2026-11-01',
      text: 'x',
    });
    expect([combined.status, combined.body.field]).toEqual([400, 'body.scope']);
    expect((await call('GET', '/v1/kpis/delay/annotations', 'pa')).body.annotations).toHaveLength(before);
    const id = (await call('GET', '/v1/kpis/delay/annotations', 'pa')).body.annotations[0].id;
    const patch = await call('PATCH', `/v1/annotations/${id}`, 'pa', {});
    expect(patch.status).toBe(400);
    expect((await call('PATCH', '/v1/annotations/nope', 'pa', { text: 'x' })).body.field).toContain('id');
    expect((await call('GET', '/v1/threads/essay/1', 'pa')).body.field).toContain('kind');
    // An id a database would choke on is refused before it gets there.
    for (const bad of ['inc%00x', 'a%20b']) {
      const r = await call('GET', `/v1/threads/incident/${bad}`, 'pa');
      expect([r.status, r.body.field], bad).toEqual([400, 'params.id']);
    }
    expect((await call('GET', `/v1/threads/incident/${'x'.repeat(101)}`, 'pa')).status).toBe(400);
    expect((await call('GET', '/v1/kpis/delay/annotations?from=2026-02-30', 'pa')).body.field).toContain('from');
    expect((await call('POST', '/v1/threads/goal/sooner', 'pa', { text: 'x'.repeat(4001) })).body.field).toBe(
      'body.text',
    );
    expect(
      (await call('POST', '/v1/threads/goal/sooner', 'pa', { text: 'ask @someone@elsewhere.example' })).body.field,
    ).toBe('body.text');
    // No token: 401; an operator reads no KPI annotations.
    expect((await fetch(`${t.url}/v1/kpis/delay/annotations`)).status).toBe(401);
    expect((await call('GET', '/v1/kpis/delay/annotations', 'operator')).status).toBe(403);
  });
});

describe('comment threads', () => {
  it('a mention notifies that person once, the text escaped in the e-mail; the thread is the same for both partners', async () => {
    const text = 'Can @bea@pb.example and @BEA@pb.example check <script>alert(1)</script> & report?';
    const r = await call('POST', '/v1/threads/goal/sooner', 'pa', { text });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.comment.mentions).toEqual(['bea@pb.example']);
    expect(r.body.notified).toBe(1);
    await mail.waitFor(() =>
      mail.messages.some((m) => m.subject?.includes('mentioned you on the goal Deliver sooner')),
    );
    const mails = mail.messages.filter((m) => m.subject?.includes('mentioned you on the goal Deliver sooner'));
    expect(mails).toHaveLength(1);
    expect(JSON.stringify(mails[0]!.to)).toContain('bea@pb.example');
    // Escaped: the words are there, no markup of the writer's.
    expect(String(mails[0]!.html)).toContain('&#60;script&#62;alert(1)&#60;/script&#62; &#38; report?');
    expect(String(mails[0]!.html)).not.toMatch(/<script/i);
    expect(mails[0]!.text).toContain('<script>alert(1)</script> & report?');
    // The thread: stored as written (JSON text), the same for pb and pa.
    const a = await call('GET', '/v1/threads/goal/sooner', 'pa');
    const b = await call('GET', '/v1/threads/goal/sooner', 'pb');
    expect(a.body).toEqual(b.body);
    expect(a.body.comments.at(-1).text).toBe(text);
    // Threads on an incident that does not exist, or a goal, are 404.
    expect((await call('GET', '/v1/threads/incident/inc_nope', 'pa')).status).toBe(404);
    expect((await call('GET', '/v1/threads/goal/nope', 'pa')).status).toBe(404);
  });

  it('a proposal thread is for admins and steering; only the steering committee may be mentioned', async () => {
    const doc = agreement.replace('title: Deliver sooner', 'title: Deliver much sooner');
    const prop = await call('POST', '/v1/agreement/proposals', 'admin', { document: doc, reason: 'sharper title' });
    expect(prop.status, JSON.stringify(prop.body)).toBe(201);
    const id = prop.body.id;
    expect((await call('GET', `/v1/threads/proposal/${id}`, 'pa')).status).toBe(403);
    const ok = await call('POST', `/v1/threads/proposal/${id}`, 'admin', { text: 'Agreed? @chair@example.org' });
    expect([ok.status, ok.body.notified]).toEqual([201, 1]);
    const no = await call('POST', `/v1/threads/proposal/${id}`, 'admin', { text: 'and @bea@pb.example' });
    expect([no.status, no.body.field]).toEqual([400, 'body.text']);
    expect((await call('GET', `/v1/threads/proposal/${id}`, 'chair')).body.comments).toHaveLength(1);
  });

  it("one partner's flood of comments stops at WRITES_PER_HOUR, and another partner's newest comment is listed", async () => {
    const { addComment, WRITES_PER_HOUR } = await import('../../services/feedback/feedback-service.js');
    const pa = { tokenId: 'flood', partnerId: 'pa', role: 'analyst' as const, name: 'anna@pa.example' };
    let written = 0;
    for (;;) {
      try {
        await addComment(t.room, pa, 'goal', 'sooner', `filler ${written}`);
        written++;
      } catch (e) {
        expect((e as { status?: number }).status).toBe(429);
        break;
      }
      expect(written).toBeLessThanOrEqual(WRITES_PER_HOUR);
    }
    expect(written).toBeGreaterThan(0);
    // Over HTTP, with another of pa's tokens: the partner's hour, not the token's.
    const more = await call('POST', '/v1/threads/goal/sooner', 'pa', { text: 'one more' });
    expect(more.status).toBe(429);
    expect(more.body.detail).toMatch(/^partner pa wrote 60 comments in the last hour/);
    expect(more.type).toMatch(/problem\+json/);
    // pb is not held back by pa's flood, and its comment, a second later, is the thread's last one listed.
    (t.clock as TestClock).advance(1000);
    const theirs = await call('POST', '/v1/threads/goal/sooner', 'pb', { text: 'Answered in the review.' });
    expect(theirs.status, JSON.stringify(theirs.body)).toBe(201);
    const thread = await call('GET', '/v1/threads/goal/sooner', 'pa');
    expect(thread.body.comments.at(-1).id).toBe(theirs.body.comment.id);
  });
});

describe('retrospectives and the action tracker', () => {
  it('a shared record per month: what strengthened and weakened trust, decisions as actions with owner and due date', async () => {
    const good = await call('POST', '/v1/retrospectives/2026-10/items', 'pa', {
      kind: 'strengthened',
      text: 'Both hubs shared the strike plan <b>early</b>',
    });
    expect(good.status, JSON.stringify(good.body)).toBe(201);
    await call('POST', '/v1/retrospectives/2026-10/items', 'pb', { kind: 'weakened', text: 'Late feeds on the 9th' });
    const act = await call('POST', '/v1/retrospectives/2026-10/actions', 'pa', {
      description: 'Move the nightly job an hour earlier',
      owner: 'bea@pb.example',
      due: '2026-11-20',
    });
    expect(act.status, JSON.stringify(act.body)).toBe(201);
    expect(act.body).toMatchObject({
      source: 'retrospective:2026-10',
      owner: { partner: 'pb', name: 'Bea', email: 'bea@pb.example' },
      state: 'open',
      // The test clock is at 2026-11-23.
      overdue: true,
    });
    const a = await call('GET', '/v1/retrospectives/2026-10', 'pa');
    const b = await call('GET', '/v1/retrospectives/2026-10', 'pb');
    expect(a.body).toEqual(b.body);
    expect(a.body.strengthened.map((i: any) => i.text)).toEqual(['Both hubs shared the strike plan <b>early</b>']);
    expect(a.body.weakened.map((i: any) => i.author.partner)).toEqual(['pb']);
    expect(a.body.actions.map((x: any) => x.id)).toEqual([act.body.id]);
    // A stage has its retrospective too.
    expect((await call('GET', '/v1/retrospectives/field_test', 'pa')).status).toBe(200);
    // October's review lists the actions that fell due in it (and not those due later).
    const october = await call('POST', '/v1/retrospectives/2026-09/actions', 'pb', {
      description: 'Publish the shared holiday calendar',
      owner: 'anna@pa.example',
      due: '2026-10-30',
    });
    const review = await call('GET', '/v1/reviews/2026-10', 'pb');
    expect(review.status, JSON.stringify(review.body)).toBe(200);
    expect(review.body.actions.map((x: any) => [x.id, x.state, x.overdue])).toEqual([[october.body.id, 'open', true]]);
    expect((await call('GET', '/v1/reviews/2026-10', 'pa')).body.digest).toBe(review.body.digest);
  });

  it("an incident fact sheet's actions join the tracker; an overdue action notifies its owner once; its owner marks it done", async () => {
    // pa's delay far above its band in the week of 2026-11-16 (the last closed one): an incident its owner resolves with an action.
    // Three orders a day from each partner (every day's cell disclosed, so the week's is too).
    const week = (value: number, tag: string) =>
      Array.from({ length: 15 }, (_, i) => ({
        kpi: 'delay',
        at: `2026-11-${16 + (i % 5)}T${String(8 + Math.floor(i / 5)).padStart(2, '0')}:00:00Z`,
        value,
        subject: `${tag}-${i}`,
      }));
    const points = week(500, 'late');
    const theirs = week(20, 'ok');
    for (const [partner, body] of [
      ['pa', points],
      ['pb', theirs],
    ] as const) {
      const feed = (
        await createToken(
          t.room.control.db,
          { partnerId: partner, role: 'ingest', name: `${partner} feed` },
          t.clock.now(),
        )
      ).token;
      const res = await fetch(`${t.url}/v1/points`, {
        method: 'POST',
        headers: { authorization: `Bearer ${feed}`, 'content-type': 'application/x-ndjson' },
        body: body.map((p) => JSON.stringify(p)).join('\n'),
      });
      expect(res.status).toBe(202);
    }
    await t.app.reader.rollups?.loop.idle();
    t.app.alerts!.engine.requestAll();
    await t.app.alerts!.engine.idle();
    const incident = (await call('GET', '/v1/incidents?kpi=delay&scope=pa', 'pa')).body.incidents[0];
    if (!incident)
      console.log(
        JSON.stringify((await call('GET', '/v1/kpis', 'pa')).body.kpis[0].scopes),
        JSON.stringify((await call('GET', '/v1/kpis/delay/series?grain=week&by=partner', 'pa')).body.cells.slice(-4)),
      );
    expect(incident, 'an incident on pa delay').toBeTruthy();
    tokens['olga'] = (
      await createToken(t.room.control.db, { partnerId: 'pa', role: 'owner', name: 'olga@pa.example' }, t.clock.now())
    ).token;
    const resolved = await call('POST', `/v1/incidents/${incident.id}/resolve`, 'olga', {
      cause: 'process',
      narrative: 'Strike at the north hub',
      actions: [{ description: 'Agree a strike plan with the union', owner: 'Olga', due: '2026-11-21' }],
    });
    expect(resolved.status, JSON.stringify(resolved.body)).toBe(200);
    const tracked = await call('GET', '/v1/actions?state=overdue', 'pb');
    expect(tracked.status).toBe(200);
    const fromIncident = tracked.body.actions.find((x: any) => x.source === `incident:${incident.id}`);
    expect(fromIncident).toMatchObject({
      id: `act_${incident.id}_0`,
      kpi: 'delay',
      owner: { partner: 'pa', name: 'Olga', email: 'olga@pa.example' },
      overdue: true,
    });
    // The scheduled evaluation, twice: each overdue owner is told once (the September decision's too).
    for (let i = 0; i < 2; i++) {
      t.app.alerts!.engine.requestAll();
      await t.app.alerts!.engine.idle();
    }
    const overdue = () => mail.messages.filter((m) => m.subject?.startsWith('[Parity] Overdue:'));
    await mail.waitFor(() => overdue().length >= 3);
    await new Promise((r) => setTimeout(r, 500));
    expect(
      overdue()
        .map((m) => JSON.stringify(m.to).match(/[\w.]+@[\w.]+/)![0])
        .sort(),
    ).toEqual(['anna@pa.example', 'bea@pb.example', 'olga@pa.example']);
    // Only its owner (or steering, or a partner admin) marks it done; a pb token named like the owner is not the owner.
    expect((await call('POST', `/v1/actions/${fromIncident.id}/done`, 'pb', {})).status).toBe(403);
    tokens['fakeOlga'] = (
      await createToken(t.room.control.db, { partnerId: 'pb', role: 'analyst', name: 'olga@pa.example' }, t.clock.now())
    ).token;
    expect((await call('POST', `/v1/actions/${fromIncident.id}/done`, 'fakeOlga', {})).status).toBe(403);
    const done = await call('POST', `/v1/actions/${fromIncident.id}/done`, 'olga', {});
    expect(done.body).toMatchObject({ state: 'done', overdue: false, doneBy: 'olga@pa.example' });
    expect((await call('GET', '/v1/actions?state=overdue', 'pa')).body.actions.map((x: any) => x.id)).not.toContain(
      fromIncident.id,
    );
  });

  it('bad periods, kinds, owners and dates get a 400 naming the field', async () => {
    const cases: [string, unknown, string][] = [
      ['/v1/retrospectives/2026-13/items', { kind: 'weakened', text: 'x' }, 'period'],
      ['/v1/retrospectives/pilot/items', { kind: 'weakened', text: 'x' }, 'period'],
      ['/v1/retrospectives/2026-10/items', { kind: 'neutral', text: 'x' }, 'kind'],
      ['/v1/retrospectives/2026-10/items', { kind: 'weakened', text: 'x'.repeat(1001) }, 'text'],
      [
        '/v1/retrospectives/2026-10/actions',
        { description: 'x', owner: 'nobody@else.example', due: '2026-12-01' },
        'owner',
      ],
      ['/v1/retrospectives/2026-10/actions', { description: 'x', owner: 'bea@pb.example', due: '2026-02-30' }, 'due'],
      [
        '/v1/retrospectives/2026-10/actions',
        { description: '', owner: 'bea@pb.example', due: '2026-12-01' },
        'description',
      ],
    ];
    for (const [path, body, field] of cases) {
      const r = await call('POST', path, 'pa', body);
      expect(r.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(JSON.stringify(r.body), `${path} ${JSON.stringify(body)}`).toContain(field);
    }
    // A retrospective's action is read by every partner: a person known to the room only through
    // a need-to-know KPI is no one's to name, not even by a reader of that KPI (dpo, Dora).
    for (const owner of ['dpo@pa.example', 'dora@pa.example']) {
      const r = await call('POST', '/v1/retrospectives/2026-10/actions', 'dpo', {
        description: 'x',
        owner,
        due: '2026-12-01',
      });
      expect(r.status, owner).toBe(400);
      expect(r.body.field).toBe('body.owner');
    }
    expect((await call('GET', '/v1/actions?state=late', 'pa')).body.field).toContain('state');
    expect((await call('POST', '/v1/actions/act_nope/done', 'pa', {})).status).toBe(404);
    // Due before the month it was decided in (a red team's flood was due in 2000, first in every list).
    const early = await call('POST', '/v1/retrospectives/2026-10/actions', 'pa', {
      description: 'x',
      owner: 'bea@pb.example',
      due: '2026-09-30',
    });
    expect(early.status).toBe(400);
    expect(early.body.field).toBe('body.due');
  });

  it("one partner's flood of actions stops at MAX_OPEN_ACTIONS open, and the others' stay in every list", async () => {
    const { addRetroAction, MAX_OPEN_ACTIONS, ACTIONS_PER_DAY } =
      await import('../../services/feedback/retrospectives.js');
    const pa = { tokenId: 'flood', partnerId: 'pa', role: 'analyst' as const, name: 'anna@pa.example' };
    const open = (await call('GET', '/v1/actions?state=open', 'pa')).body.actions.length as number;
    const mine = (await call('GET', '/v1/actions?state=open', 'pa')).body.actions.filter((a: any) =>
      a.source.startsWith('retrospective:'),
    ).length as number;
    // pa's users recorded `mine` or fewer so far (pb recorded some too): fill pa's quota.
    // At most ACTIONS_PER_DAY a day (429), and MAX_OPEN_ACTIONS open (409): a day at a time.
    let recorded = 0;
    let today = 0;
    let days = 0;
    for (;;) {
      try {
        await addRetroAction(t.room, pa, '2026-08', {
          description: 'filler',
          owner: 'bea@pb.example',
          due: '2026-08-01',
        });
        recorded++;
        today++;
      } catch (e) {
        const status = (e as { status?: number }).status;
        if (status === 429) {
          // The first day counts what pa recorded earlier in this file too.
          if (days > 0) expect(today).toBe(ACTIONS_PER_DAY);
          else expect(today).toBeLessThanOrEqual(ACTIONS_PER_DAY);
          (t.clock as TestClock).advance(86_400_000 + 1000);
          [today, days] = [0, days + 1];
          continue;
        }
        expect(status).toBe(409);
        break;
      }
      expect(recorded).toBeLessThanOrEqual(MAX_OPEN_ACTIONS);
    }
    expect(days).toBeGreaterThan(0);
    expect(recorded).toBeGreaterThan(MAX_OPEN_ACTIONS - mine - 1);
    const refused = await call('POST', '/v1/retrospectives/2026-08/actions', 'pa', {
      description: 'one more',
      owner: 'bea@pb.example',
      due: '2026-08-01',
    });
    expect(refused.status).toBe(409);
    expect(refused.type).toMatch(/problem\+json/);
    // Another partner records its own, and it is listed for everyone, ahead of nothing it should not be.
    const theirs = await call('POST', '/v1/retrospectives/2026-08/actions', 'pb', {
      description: 'Share the holiday calendar',
      owner: 'anna@pa.example',
      due: '2026-08-15',
    });
    expect(theirs.status, JSON.stringify(theirs.body)).toBe(201);
    for (const who of ['pa', 'pb']) {
      const listed = (await call('GET', '/v1/actions?state=open', who)).body.actions as { id: string }[];
      expect(listed.length).toBe(open + recorded + 1);
      expect(listed.map((a) => a.id)).toContain(theirs.body.id);
      const august = (await call('GET', '/v1/retrospectives/2026-08', who)).body.actions as { id: string }[];
      expect(august.map((a) => a.id)).toContain(theirs.body.id);
    }
  });
});

describe('write budgets under concurrent requests', () => {
  it('requests at once write no more than the budget: each counts what the one before it wrote', async () => {
    const { addComment, WRITES_PER_HOUR } = await import('../../services/feedback/feedback-service.js');
    const { addRetroAction, ACTIONS_PER_DAY, MAX_OPEN_ACTIONS } =
      await import('../../services/feedback/retrospectives.js');
    const { countActionsOf } = await import('../../services/feedback/action-repository.js');
    // A new hour and a new day: what the tests above wrote falls out of both windows.
    (t.clock as TestClock).advance(2 * 86_400_000);
    const pb = { tokenId: 'burst', partnerId: 'pb', role: 'analyst' as const, name: 'bea@pb.example' };
    const atOnce = async (n: number, write: (i: number) => Promise<unknown>) => {
      const outcomes = await Promise.allSettled(Array.from({ length: n }, (_, i) => write(i)));
      return {
        written: outcomes.filter((o) => o.status === 'fulfilled').length,
        refused: new Set(
          outcomes.flatMap((o) => (o.status === 'rejected' ? [(o.reason as { status?: number }).status] : [])),
        ),
      };
    };
    // On PostgreSQL (CI) the requests run on the pool's connections side by side: without the
    // budget's lock, each counted before the others wrote, and more than the budget landed.
    const comments = await atOnce(WRITES_PER_HOUR + 30, (i) => addComment(t.room, pb, 'goal', 'sooner', `burst ${i}`));
    expect(comments).toEqual({ written: WRITES_PER_HOUR, refused: new Set([429]) });
    const thread = await call('GET', '/v1/threads/goal/sooner', 'pb');
    expect(thread.body.comments.filter((c: { text: string }) => c.text.startsWith('burst ')).length).toBe(
      WRITES_PER_HOUR,
    );
    const open = await countActionsOf(t.room.control.db, 'pb', { open: true });
    const allowed = Math.min(ACTIONS_PER_DAY, MAX_OPEN_ACTIONS - open);
    expect(allowed).toBeGreaterThan(0);
    const actions = await atOnce(ACTIONS_PER_DAY + 30, (i) =>
      addRetroAction(t.room, pb, '2026-08', { description: `burst ${i}`, owner: 'anna@pa.example', due: '2026-08-20' }),
    );
    expect(actions.written).toBe(allowed);
    expect(await countActionsOf(t.room.control.db, 'pb', { open: true })).toBe(open + allowed);
  });
});

describe('mentions of one person', () => {
  it("one partner's users mail one person MENTIONS_PER_PERSON_HOUR times an hour; past that the comment is a 429 naming body.text", async () => {
    const { MENTIONS_PER_PERSON_HOUR } = await import('../../services/feedback/feedback-service.js');
    // A new hour: the comments above fall out of it.
    (t.clock as TestClock).advance(2 * 3_600_000);
    const outbox = async () =>
      (await t.room.control.db.selectFrom('outbox').select('event').execute()).filter(
        (m) => m.event === 'comment.mention',
      ).length;
    const before = await outbox();
    const thread = async () => (await call('GET', '/v1/threads/goal/sooner', 'pb')).body.comments.length as number;
    // Mentioned in any case: the same person.
    for (let i = 0; i < MENTIONS_PER_PERSON_HOUR; i++) {
      const ok = await call('POST', '/v1/threads/goal/sooner', i % 2 ? 'pa' : 'pa2', {
        text: `ping ${i} @${i % 3 ? 'bea@pb.example' : 'Bea@PB.example'}`,
      });
      expect([ok.status, ok.body.notified], JSON.stringify(ok.body)).toEqual([201, 1]);
    }
    const comments = await thread();
    const over = await call('POST', '/v1/threads/goal/sooner', 'pa', {
      text: 'again @bea@pb.example and @olga@pa.example',
    });
    expect(over.status).toBe(429);
    expect(over.type).toMatch(/problem\+json/);
    expect(over.body.field).toBe('body.text');
    expect(over.body.detail).toMatch(
      new RegExp(`^partner pa mentioned bea@pb\\.example ${MENTIONS_PER_PERSON_HOUR} times in the last hour`),
    );
    expect(over.headers['retry-after']).toBe('600');
    // Nothing landed: no comment, no mail, not even to the other person it named.
    expect(await thread()).toBe(comments);
    expect(await outbox()).toBe(before + MENTIONS_PER_PERSON_HOUR);
    // Another person is mentioned, and another partner mentions the same one.
    const other = await call('POST', '/v1/threads/goal/sooner', 'pa', { text: 'over to @olga@pa.example' });
    expect([other.status, other.body.notified]).toEqual([201, 1]);
    const theirs = await call('POST', '/v1/threads/goal/sooner', 'pb', { text: 'noted, @bea@pb.example' });
    expect([theirs.status, theirs.body.notified]).toEqual([201, 1]);
    // An hour on, pa may mention bea again.
    (t.clock as TestClock).advance(3_600_000 + 1000);
    const later = await call('POST', '/v1/threads/goal/sooner', 'pa', { text: 'back to @bea@pb.example' });
    expect([later.status, later.body.notified]).toEqual([201, 1]);
  });
});
