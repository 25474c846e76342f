import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import { TestClock } from '../../services/platform/clock.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { agreementWithHooks, HookReceiver, MailCatcher, type ReceivedHook } from '../helpers/receivers.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

// Clock: 2026-11-23 (a Monday) 12:00Z. lead_time is evaluated weekly against upper 72 h; the
// last closed week starts 2026-11-16. Owners: Ana (acme, webhook /acme), Gus (globex, /globex).
const HOUR = 3_600_000;
const week = (monday: string, partner: string, hours: number, count: number, tag: string): TestPoint[] =>
  Array.from({ length: count }, (_, i) => ({
    kpi: 'lead_time',
    at: new Date(Date.parse(`${monday}T01:00:00Z`) + i * HOUR).toISOString(),
    value: hours,
    subject: `${partner}-${tag}-${i}`,
  }));

type Who = 'ana' | 'gus' | 'otto' | 'analystAcme' | 'analystGlobex' | 'adminAcme' | 'adminGlobex' | 'steering';
interface Ctx {
  t: TestRoom;
  clock: TestClock;
  receiver: HookReceiver;
  tokens: Record<Who, string>;
}

async function setup(env: Record<string, string> = {}): Promise<Ctx> {
  const receiver = await new HookReceiver().start();
  const clock = new TestClock('2026-11-23T12:00:00Z');
  const t = await startTestRoom({
    clock,
    agreementFile: agreementWithHooks(receiver),
    env: { PARITY_EVALUATE_EVERY_SECONDS: '3600', ...env },
  });
  const named = async (partner: string, role: 'owner' | 'analyst' | 'steering' | 'admin', name: string) =>
    (await createToken(t.room.control.db, { partnerId: partner, role, name }, clock.now())).token;
  const tokens = {
    ana: await named('acme', 'owner', 'ana@acme.example'),
    gus: await named('globex', 'owner', 'gus@globex.example'),
    otto: await named('acme', 'owner', 'ops@acme.example'), // an owner, but of error_rate
    analystAcme: await t.token('acme', 'analyst'),
    analystGlobex: await t.token('globex', 'analyst'),
    adminAcme: await t.token('acme', 'admin'),
    adminGlobex: await t.token('globex', 'admin'),
    steering: await named('acme', 'steering', 'chair@example.org'),
  };
  return { t, clock, receiver, tokens };
}

async function push(c: Ctx, partner: string, points: TestPoint[]): Promise<void> {
  const res = await fetch(`${c.t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await c.t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(points),
  });
  expect(res.status).toBe(202);
}

async function call(c: Ctx, method: string, path: string, token: string | undefined, body?: unknown) {
  const res = await fetch(`${c.t.url}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: text ? JSON.parse(text) : null };
}

/** A room (with its webhook receiver) for the describe block this is called in, closed after it. */
function roomForBlock(set: (c: Ctx) => void, env: () => Record<string, string> = () => ({})): void {
  let c: Ctx | undefined;
  beforeAll(async () => {
    set((c = await setup(env())));
  });
  afterAll(async () => {
    await c?.t.close();
    await c?.receiver.close();
  });
}

/** Lets evaluation and delivery finish (the schedule with `full`, as after moving the clock). */
async function settle(c: Ctx, full = false): Promise<void> {
  const a = c.t.app.alerts!;
  await a.engine.idle();
  if (full) {
    a.engine.requestAll();
    await a.engine.idle();
  }
  await a.notifier.settle();
}

type Sheet = {
  id: string;
  kind: string;
  chair?: { name: string; email: string };
  state: string;
  scope: string;
  value: number | null;
  suppressed: boolean;
  band: { upper: number };
  snapshot: number;
  digest: string;
  source: string;
  escalatedAt: string | null;
  resolution: string | null;
  narrative: string | null;
  kpi: { id: string };
};
const payloadOf = (h: ReceivedHook) => JSON.parse(h.body) as { type: string; timestamp: string; data: Sheet };

/** Every number anywhere in a JSON value. */
function numbers(v: unknown, out: number[] = []): number[] {
  if (typeof v === 'number') out.push(v);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) numbers(x, out);
  return out;
}

describe('a breach reaches its owners: signed webhooks and e-mail', () => {
  let c: Ctx;
  let mail: MailCatcher;
  let secrets: Record<string, string>;

  beforeAll(async () => {
    mail = await new MailCatcher().start();
    c = await setup({ SMTP_URL: mail.url });
    // The last closed week: acme 10 orders at 100 h (out of band), globex 6 at 50 h (in band); the
    // combined median is 100 h. The week before: acme 10 at 60 h, globex 3 orders at 500 h — too few
    // to disclose, so that week has no verdict for globex nor the combined figure, and 500 must
    // reach no one.
    await push(c, 'acme', [...week('2026-11-16', 'acme', 100, 10, 'a'), ...week('2026-11-09', 'acme', 60, 10, 'p')]);
    await push(c, 'globex', [
      ...week('2026-11-16', 'globex', 50, 6, 'g'),
      ...week('2026-11-09', 'globex', 500, 3, 'p'),
    ]);
    await settle(c);
  });
  afterAll(async () => {
    await c.t.close();
    await c.receiver.close();
    await mail.close();
  });

  it('opens one incident per scope and notifies the owners answering for each', async () => {
    const r = await call(c, 'GET', '/v1/incidents?kpi=lead_time&kind=breach', c.tokens.analystAcme);
    expect(r.status).toBe(200);
    const byScope = Object.fromEntries((r.body.incidents as Sheet[]).map((i) => [i.scope, i]));
    expect(Object.keys(byScope).sort()).toEqual(['acme', 'combined']);
    expect(byScope['combined']).toMatchObject({
      state: 'notified',
      value: 100,
      suppressed: false,
      band: { upper: 72 },
    });
    expect(byScope['acme']).toMatchObject({ value: 100, suppressed: false });
    await c.receiver.waitFor(() => c.receiver.delivered.length >= 3);
    const paths = c.receiver.delivered.map((h) => `${h.path}:${payloadOf(h).data.scope}`).sort();
    expect(paths).toEqual(['/acme:acme', '/acme:combined', '/globex:combined']);
  });

  it('signs every webhook per Standard Webhooks: the standardwebhooks package verifies it with the secret the partner reads', async () => {
    const hooks = async (token: string) =>
      (await call(c, 'GET', '/v1/webhooks', token)).body.webhooks as { url: string; secret: string; kpis: string[] }[];
    const acme = await hooks(c.tokens.adminAcme);
    const globex = await hooks(c.tokens.adminGlobex);
    // Each partner sees its own endpoints only.
    expect(acme.map((h) => h.url)).toEqual([c.receiver.url('/acme')]);
    expect(globex.map((h) => h.url)).toEqual([c.receiver.url('/globex')]);
    expect(acme[0]!.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    secrets = { '/acme': acme[0]!.secret, '/globex': globex[0]!.secret };
    for (const h of c.receiver.delivered) {
      const verified = new Webhook(secrets[h.path]!).verify(h.body, h.headers as Record<string, string>) as {
        type: string;
      };
      expect(verified.type).toBe('incident.opened');
      expect(h.headers['webhook-id']).toMatch(/^msg_/);
      // Another endpoint's secret does not verify it.
      const other = h.path === '/acme' ? secrets['/globex']! : secrets['/acme']!;
      expect(() => new Webhook(other).verify(h.body, h.headers as Record<string, string>)).toThrow();
    }
    // A tampered body fails verification.
    const h = c.receiver.delivered[0]!;
    expect(() =>
      new Webhook(secrets[h.path]!).verify(
        h.body.replace('lead_time', 'lead_timf'),
        h.headers as Record<string, string>,
      ),
    ).toThrow();
    expect((await call(c, 'GET', '/v1/webhooks', c.tokens.analystAcme)).status).toBe(403);
  });

  it("a partner's admin rotates its webhook secret: the old one signs beside the new one for the overlap", async () => {
    const url = c.receiver.url('/acme');
    const view = async (token: string) =>
      ((await call(c, 'GET', '/v1/webhooks', token)).body.webhooks as Record<string, unknown>[])[0]!;
    const before = await view(c.tokens.adminAcme);
    const otherBefore = await view(c.tokens.adminGlobex);
    expect(before).toMatchObject({ secret: secrets['/acme'], previousSecret: null, previousUntil: null });
    // Only an admin, only its own partner's endpoint, a bounded overlap.
    expect((await call(c, 'POST', '/v1/webhooks/rotate', c.tokens.ana, { url })).status).toBe(403);
    for (const [body, field] of [
      [{ url: c.receiver.url('/globex') }, 'body.url'],
      [{ url: 'https://elsewhere.example/hook' }, 'body.url'],
      [{ url, overlapHours: 500 }, 'body.overlapHours'],
      [{ url, extra: 1 }, 'body.extra'],
    ] as const) {
      const r = await call(c, 'POST', '/v1/webhooks/rotate', c.tokens.adminAcme, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.field, JSON.stringify(body)).toBe(field);
    }
    const rotated = await call(c, 'POST', '/v1/webhooks/rotate', c.tokens.adminAcme, { url, overlapHours: 2 });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(before['secret']);
    expect(rotated.body).toMatchObject({
      previousSecret: before['secret'],
      previousUntil: new Date(c.clock.now().getTime() + 2 * HOUR).toISOString(),
    });
    // The other partner's secret is its own business.
    expect(await view(c.tokens.adminGlobex)).toEqual(otherBefore);
    // After the overlap only the new secret signs.
    const start = c.clock.now();
    c.clock.advance(2 * HOUR + 1000);
    expect(await view(c.tokens.adminAcme)).toMatchObject({
      secret: rotated.body.secret,
      previousSecret: null,
      previousUntil: null,
    });
    c.clock.set(start);
    secrets['/acme'] = rotated.body.secret;
    const log = await call(c, 'GET', '/v1/audit?action=webhooks.secret_rotated', c.tokens.adminAcme);
    expect(JSON.stringify(log.body)).not.toContain(rotated.body.secret);
    expect(log.body.entries).toHaveLength(1);
  });

  it('carries the snapshot and digest of the figure: the series request it names gives the same digest', async () => {
    const combined = c.receiver.delivered.map(payloadOf).find((p) => p.data.scope === 'combined')!;
    expect(combined.data.source).toMatch(
      /^\/v1\/kpis\/lead_time\/series\?grain=week&from=2026-11-16&to=2026-11-22&snapshot=\d+$/,
    );
    for (const token of [c.tokens.analystAcme, c.tokens.analystGlobex]) {
      const series = await call(c, 'GET', combined.data.source, token);
      expect(series.status).toBe(200);
      expect(series.body.digest).toBe(combined.data.digest);
      expect(series.body.snapshot).toBe(combined.data.snapshot);
      expect(series.body.cells[0]).toMatchObject({ period: '2026-11-16', value: combined.data.value });
    }
  });

  it("never gives one partner's recipient a value the dashboard withholds, nor the other partner's scope", async () => {
    for (const h of c.receiver.delivered) {
      const p = payloadOf(h);
      expect(numbers(p.data)).not.toContain(500);
      if (h.path === '/acme') expect(p.data.scope).not.toBe('globex');
      if (h.path === '/globex') expect(p.data.scope).not.toBe('acme');
      // The value is exactly what the recipient's own dashboard shows at that snapshot (null where withheld).
      const series = await call(c, 'GET', p.data.source, h.path === '/acme' ? c.tokens.ana : c.tokens.gus);
      const cell = (series.body.cells as { group: string | null; value: number | null }[]).find(
        (x) => x.group === (p.data.scope === 'combined' ? null : p.data.scope),
      );
      expect(p.data.value).toBe(cell?.value ?? null);
      expect(p.data.suppressed).toBe(cell === undefined || cell.value === null);
    }
    // globex's 3 orders of the week before are withheld at every snapshot: no verdict, no incident.
    expect(c.receiver.delivered.map(payloadOf).some((p) => p.data.scope === 'globex')).toBe(false);
    await mail.waitFor(() => mail.messages.length >= 3);
    for (const m of mail.messages) {
      expect(m.text).not.toMatch(/\b500\b/);
      const to = (Array.isArray(m.to) ? m.to : [m.to]).flatMap((x) => x!.value.map((v) => v.address));
      if (to.includes('ana@acme.example')) expect(m.text).not.toMatch(/Scope: globex/);
    }
  });

  it('sends an e-mail with a plain-text and an HTML fact sheet that parse', async () => {
    const toAna = mail.messages.filter((m) =>
      (Array.isArray(m.to) ? m.to : [m.to]).some((x) => x!.value.some((v) => v.address === 'ana@acme.example')),
    );
    expect(toAna).toHaveLength(2);
    const combined = toAna.find((m) => /Scope: combined/.test(m.text ?? ''))!;
    expect(combined.subject).toMatch(/^\[Parity\] Incident: Lead time/);
    expect(combined.text).toMatch(/Value: 100 hours/);
    expect(combined.text).toMatch(/Band: ≤ 72 hours \(static\)/);
    const sheet = c.receiver.delivered.map(payloadOf).find((p) => p.data.scope === 'combined')!.data;
    expect(combined.text).toContain(`Digest: ${sheet.digest}`);
    expect(combined.html).toContain('<table>');
    expect(combined.html).toContain(sheet.digest);
  });
});

describe('the incident lifecycle: acknowledge, escalate, resolve — by the named owner or steering only', () => {
  let c: Ctx;
  let combined: Sheet;
  let acmeScope: Sheet;

  beforeAll(async () => {
    c = await setup(); // no SMTP_URL: e-mails are kept for the dashboard
    await push(c, 'acme', week('2026-11-16', 'acme', 100, 10, 'a'));
    await push(c, 'globex', week('2026-11-16', 'globex', 90, 10, 'g'));
    await settle(c);
    const list = (await call(c, 'GET', '/v1/incidents?kpi=lead_time&state=active', c.tokens.analystAcme)).body
      .incidents as Sheet[];
    combined = list.find((i) => i.scope === 'combined')!;
    acmeScope = list.find((i) => i.scope === 'acme')!;
  });
  afterAll(async () => {
    await c.t.close();
    await c.receiver.close();
  });

  it('without SMTP the e-mails are kept and shown to the recipient partner; the incident counts as notified', async () => {
    expect(combined.state).toBe('notified');
    const ana = await call(c, 'GET', '/v1/notifications', c.tokens.ana);
    expect(ana.status).toBe(200);
    const kept = (ana.body.notifications as { channel: string; state: string; factSheet: Sheet }[]).filter(
      (n) => n.channel === 'email',
    );
    expect(kept.map((n) => n.state)).toEqual(['kept', 'kept']);
    expect(kept.every((n) => n.factSheet.scope !== 'globex')).toBe(true);
    const gus = (await call(c, 'GET', '/v1/notifications', c.tokens.gus)).body.notifications as { factSheet: Sheet }[];
    expect(gus.every((n) => n.factSheet.scope !== 'acme')).toBe(true);
    // Reading notifications is an access like any other: audited.
    const audited = await c.t.room.control.db
      .selectFrom('audit_log')
      .select('partner_id')
      .where('action', '=', 'query.notifications')
      .execute();
    expect(audited.map((r) => r.partner_id).sort()).toEqual(['acme', 'globex']);
  });

  it('refuses everyone but the named owner or steering: 403, and 404 for an unknown incident', async () => {
    const ack = (id: string, token: string) => call(c, 'POST', `/v1/incidents/${id}/ack`, token, {});
    expect((await ack(combined.id, c.tokens.analystAcme)).status).toBe(403);
    expect((await ack(combined.id, c.tokens.otto)).status).toBe(403); // an owner, of another KPI
    expect((await ack(acmeScope.id, c.tokens.gus)).status).toBe(403); // globex does not answer for acme's figure
    expect((await ack(combined.id, c.tokens.adminAcme)).status).toBe(403);
    expect((await ack(combined.id, await c.t.token('acme', 'ingest'))).status).toBe(403);
    expect((await ack(combined.id, await c.t.token(null, 'operator'))).status).toBe(403);
    expect((await call(c, 'POST', `/v1/incidents/${combined.id}/ack`, undefined, {})).status).toBe(401);
    const unknown = await ack('inc_doesnotexist', c.tokens.ana);
    expect(unknown.status).toBe(404);
    expect(unknown.type).toMatch(/application\/problem\+json/);
  });

  it('hostile filters and ids get 400 naming the parameter; a SQL fragment is just a value', async () => {
    const bad: [string, string][] = [
      ['/v1/incidents?state=bogus', 'querystring.state'],
      ['/v1/incidents?from=2026-13-45', 'querystring.from'],
      ['/v1/incidents?to=yesterday', 'querystring.to'],
      // Calendar dates PostgreSQL's timestamps do not hold, or out of the room's range (2000–2100).
      ['/v1/incidents?from=0000-01-01', 'querystring.from'],
      ['/v1/incidents?to=0000-01-01', 'querystring.to'],
      ['/v1/incidents?to=9999-12-31', 'querystring.to'],
      ['/v1/incidents?from=1999-12-31', 'querystring.from'],
      ['/v1/incidents?limit=0', 'querystring.limit'],
      ['/v1/incidents?limit=abc', 'querystring.limit'],
      ['/v1/incidents?kind=both', 'querystring.kind'],
      ['/v1/incidents?foo=1', 'querystring.foo'],
      ["/v1/incidents/inc_x'%20OR%201=1--", 'params.id'],
      // Past Fastify's 100 characters, an id reaches the route's schema; past 1000, the router refuses it.
      [`/v1/incidents/${'i'.repeat(101)}`, 'params.id'],
      [`/v1/incidents/${'i'.repeat(1001)}`, 'path'],
    ];
    for (const [path, field] of bad) {
      const r = await call(c, 'GET', path, c.tokens.analystAcme);
      expect(r.status, path).toBe(400);
      expect(r.type).toMatch(/application\/problem\+json/);
      expect(String(r.body.field), path).toBe(field);
      expect(JSON.stringify(r.body)).not.toMatch(/select|from incidents|stack/i);
    }
    const sqlish = await call(
      c,
      'GET',
      `/v1/incidents?kpi=${encodeURIComponent("lead_time' OR '1'='1")}`,
      c.tokens.analystAcme,
    );
    expect(sqlish.status).toBe(200);
    expect(sqlish.body.incidents).toEqual([]);
    // The operator and ingest roles never read incidents (they carry values).
    expect((await call(c, 'GET', '/v1/incidents', await c.t.token(null, 'operator'))).status).toBe(403);
    expect((await call(c, 'GET', '/v1/incidents', await c.t.token('acme', 'ingest'))).status).toBe(403);
    expect((await call(c, 'GET', '/v1/notifications', await c.t.token(null, 'operator'))).status).toBe(403);
  });

  it('escalates to the steering contacts once ackWithin passes unacknowledged, and the incident shows it', async () => {
    c.clock.advance(2 * 24 * HOUR + 60_000); // lead_time: ackWithin P2D
    await settle(c, true);
    const after = (await call(c, 'GET', `/v1/incidents/${combined.id}`, c.tokens.steering)).body as Sheet;
    expect(after.escalatedAt).toBe(c.clock.now().toISOString());
    const steering = (await call(c, 'GET', '/v1/notifications', c.tokens.steering)).body.notifications as {
      event: string;
      recipientName: string;
      factSheet: Sheet;
    }[];
    const escalations = steering
      .filter((n) => n.event === 'incident.escalated' && n.factSheet.id === combined.id)
      .map((n) => n.recipientName)
      .sort();
    expect(escalations).toEqual(['Clara Lind', 'Dmitri Weiss']);
    // Every escalation names the committee's chair of the day (the demo's rotation: Dmitri Weiss from July).
    const chairs = steering.filter((n) => n.event === 'incident.escalated').map((n) => n.factSheet.chair);
    expect(chairs.every((x) => x?.name === 'Dmitri Weiss' && x.email === 'deputy@example.org')).toBe(true);
    // Once only: another scheduled run does not escalate again.
    await settle(c, true);
    const again = (await call(c, 'GET', '/v1/notifications', c.tokens.steering)).body.notifications as {
      event: string;
      factSheet: Sheet;
    }[];
    expect(again.filter((n) => n.event === 'incident.escalated' && n.factSheet.id === combined.id)).toHaveLength(2);
  });

  it('the named owner acknowledges (once) and resolves with a fact sheet; bad fact sheets get 400 naming the field', async () => {
    const ok = await call(c, 'POST', `/v1/incidents/${combined.id}/ack`, c.tokens.ana, { note: 'looking into it' });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ state: 'acknowledged' });
    const twice = await call(c, 'POST', `/v1/incidents/${combined.id}/ack`, c.tokens.ana, {});
    expect(twice.status).toBe(409);

    const bad: [unknown, string][] = [
      [{ cause: 'process', actions: [] }, 'body.narrative'],
      [{ cause: 'sunspots', narrative: 'x' }, 'body.cause'],
      [{ cause: 'process', narrative: '   ' }, 'body.narrative'],
      [
        { cause: 'process', narrative: 'x', actions: [{ description: 'fix', owner: 'Ana', due: '2026-13-01' }] },
        'body.actions.0.due',
      ],
      [{ cause: 'process', narrative: 'x', actions: [{ description: 'fix', owner: 'Ana' }] }, 'body.actions.0.due'],
      [{ cause: 'process', narrative: 'x', extra: 1 }, 'body'],
      ['not json', 'body'],
    ];
    for (const [body, field] of bad) {
      const r = await call(c, 'POST', `/v1/incidents/${combined.id}/resolve`, c.tokens.ana, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.type).toMatch(/application\/problem\+json/);
      expect(String(r.body.field ?? r.body.errors?.[0]?.field), JSON.stringify(body)).toContain(field);
    }
    expect(
      (await call(c, 'POST', '/v1/incidents/nope/resolve', c.tokens.ana, { cause: 'process', narrative: 'x' })).body
        .field,
    ).toContain('params.id');
    expect((await call(c, 'GET', `/v1/incidents/${combined.id}`, c.tokens.ana)).body.state).toBe('acknowledged'); // nothing half-landed

    const sheet = {
      cause: 'capacity',
      narrative: 'Peak season: the north hub ran a short shift.',
      actions: [{ description: 'Add a weekend shift', owner: 'Ana Amsel', due: '2026-12-15' }],
    };
    const res = await call(c, 'POST', `/v1/incidents/${combined.id}/resolve`, c.tokens.ana, sheet);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      state: 'resolved',
      resolution: 'owner',
      cause: 'capacity',
      narrative: sheet.narrative,
      actions: sheet.actions,
    });
    expect((await call(c, 'POST', `/v1/incidents/${combined.id}/resolve`, c.tokens.ana, sheet)).status).toBe(409);
    // Steering may resolve too.
    const st = await call(c, 'POST', `/v1/incidents/${acmeScope.id}/resolve`, c.tokens.steering, {
      cause: 'other',
      narrative: 'Closed by the committee.',
    });
    expect(st.status).toBe(200);
    // The resolution reaches the owners and, as it was escalated, the steering contacts.
    const steering = (await call(c, 'GET', '/v1/notifications', c.tokens.steering)).body.notifications as {
      event: string;
      factSheet: Sheet;
    }[];
    expect(steering.some((n) => n.event === 'incident.resolved' && n.factSheet.id === combined.id)).toBe(true);
  });

  it('every transition is in the audit log, in order', async () => {
    const rows = await c.t.room.control.db
      .selectFrom('audit_log')
      .select(['action', 'target'])
      .where('target', '=', combined.id)
      .where('action', 'like', 'incident.%')
      .orderBy('seq')
      .execute();
    expect(rows.map((r) => r.action)).toEqual([
      'incident.opened',
      'incident.notified',
      'incident.escalated',
      'incident.acknowledged',
      'incident.resolved',
    ]);
    const { verifyAuditChain } = await import('../../services/governance/audit-repository.js');
    expect((await verifyAuditChain(c.t.room.control.db)).ok).toBe(true);
  });

  it("a repeated breach updates the open incident; the owner's resolution covers its period (no reopening)", async () => {
    await push(c, 'globex', week('2026-11-16', 'globex', 95, 2, 'g2'));
    await settle(c);
    const all = (await call(c, 'GET', '/v1/incidents?kpi=lead_time&kind=breach', c.tokens.steering)).body
      .incidents as Sheet[];
    const globex = all.filter((i) => i.scope === 'globex');
    expect(globex, JSON.stringify(globex)).toHaveLength(1);
    expect(globex[0]!.state).toBe('notified');
    expect(globex[0]!.snapshot).toBe(c.t.room.duck.snapshots.latest); // updated to the new figure
    expect(all.filter((i) => i.scope === 'combined').map((i) => i.id)).toEqual([combined.id]);
    expect(all.filter((i) => i.scope === 'acme').map((i) => i.id)).toEqual([acmeScope.id]);
  });

  it('resolves automatically once the KPI stays in band for `consecutive` closed periods, and says so', async () => {
    // The week of 2026-11-23 in band for both partners; then that week closes.
    await push(c, 'acme', week('2026-11-23', 'acme', 40, 10, 'b'));
    await push(c, 'globex', week('2026-11-23', 'globex', 30, 10, 'b'));
    c.clock.set('2026-11-30T09:00:00Z');
    // Keep every other feed fresh is not needed here: their stale incidents are separate (kind stale).
    await settle(c, true);
    const lead = (await call(c, 'GET', '/v1/incidents?kpi=lead_time&kind=breach', c.tokens.steering)).body
      .incidents as Sheet[];
    const auto = lead.filter((i) => i.resolution === 'auto');
    expect(auto.map((i) => i.scope)).toEqual(['globex']);
    expect(auto[0]!.narrative).toMatch(/^Back in band for 1 closed week in a row/);
    expect(lead.every((i) => i.state === 'resolved')).toBe(true);
  });

  it("a stale feed notifies that partner's owners only, and resolves when the feed resumes", async () => {
    // It is now 2026-11-30: team_satisfaction (every P7D, grace P3D) has never been fed since 2026-11-23.
    c.clock.set('2026-12-04T12:00:00Z');
    await settle(c, true);
    const stale = (await call(c, 'GET', '/v1/incidents?kpi=team_satisfaction&kind=stale', c.tokens.steering)).body
      .incidents as Sheet[];
    expect(stale.map((i) => i.scope).sort()).toEqual(['acme', 'globex']);
    const gus = (await call(c, 'GET', '/v1/notifications', c.tokens.gus)).body.notifications as {
      factSheet: Sheet;
      recipientName: string;
    }[];
    const gusStale = gus.filter((n) => n.factSheet.kind === 'stale' && n.factSheet.kpi.id === 'team_satisfaction');
    expect(gusStale.map((n) => [n.factSheet.scope, n.recipientName])).toEqual([['globex', 'Hugo People']]);
    // The /v1/kpis state of a stale scope is no data.
    const kpis = (await call(c, 'GET', '/v1/kpis', c.tokens.analystAcme)).body.kpis as {
      id: string;
      scopes: { group: string | null; state: string }[];
      feeds: { partner: string; stale: boolean }[];
    }[];
    const ts = kpis.find((k) => k.id === 'team_satisfaction')!;
    expect(ts.feeds.every((f) => f.stale)).toBe(true);
    expect(ts.scopes.every((s) => s.state === 'no_data')).toBe(true);
    // globex's feed resumes: its stale incident resolves; acme's stays open.
    await push(
      c,
      'globex',
      Array.from({ length: 8 }, (_, i) => ({
        kpi: 'team_satisfaction',
        at: '2026-12-03T10:00:00Z',
        value: 4,
        subject: `emp-${i}`,
      })),
    );
    await settle(c);
    const after = (await call(c, 'GET', '/v1/incidents?kpi=team_satisfaction&kind=stale', c.tokens.steering)).body
      .incidents as Sheet[];
    expect(Object.fromEntries(after.map((i) => [i.scope, i.state]))).toEqual({ acme: 'notified', globex: 'resolved' });
  });

  it('a breach in a later period opens a new incident after an owner resolved the earlier one', async () => {
    await push(c, 'acme', week('2026-11-30', 'acme', 100, 10, 'c'));
    await push(c, 'globex', week('2026-11-30', 'globex', 100, 10, 'c'));
    c.clock.set('2026-12-07T09:00:00Z');
    await settle(c, true);
    const open = (await call(c, 'GET', '/v1/incidents?kpi=lead_time&kind=breach&state=active', c.tokens.steering)).body
      .incidents as Sheet[];
    const again = open.find((i) => i.scope === 'combined')!;
    expect(again.id).not.toBe(combined.id);
    expect(again).toMatchObject({ period: '2026-11-30', value: 100 });
  });
});

describe('alerts stopped and started again', () => {
  let c: Ctx;
  let mail: MailCatcher;
  beforeAll(async () => {
    mail = await new MailCatcher().start();
  });
  roomForBlock(
    (room) => (c = room),
    () => ({ SMTP_URL: mail.url }),
  );
  afterAll(async () => {
    await mail.close();
  });

  it('evaluates and delivers again after a restart, and refuses a start while the stop is under way', async () => {
    const alerts = c.t.app.alerts!;
    const stopping = alerts.stop();
    expect(() => alerts.engine.start()).toThrow('start() while stop() is under way');
    await stopping;
    // Stopped: a breach lands, nothing is evaluated or sent.
    const runs = alerts.engine.stats.runs;
    await push(c, 'acme', week('2026-11-16', 'acme', 100, 10, 'a'));
    await new Promise((r) => setTimeout(r, 500));
    expect(alerts.engine.stats.runs).toBe(runs);
    expect(c.receiver.received).toHaveLength(0);
    expect(mail.messages).toHaveLength(0);
    // Started again: the schedule's evaluation finds the breach, the notifier sends it — the
    // webhooks, and the e-mails over a mail transport opened anew (the stop closed the old one).
    await alerts.start();
    await settle(c);
    expect(alerts.engine.stats.runs).toBeGreaterThan(runs);
    // /acme hears of the combined and the acme-scope incident, /globex of the combined one.
    expect(c.receiver.received.map((h) => h.path).sort()).toEqual(['/acme', '/acme', '/globex']);
    expect(new Set(c.receiver.delivered.map((h) => h.headers['webhook-id'])).size).toBe(3);
    await mail.waitFor(() => mail.messages.length > 0);
    expect(mail.messages.length).toBeGreaterThan(0);
  });
});

describe('delivery survives faults', () => {
  let c: Ctx;
  roomForBlock((room) => (c = room));

  const outbox = () =>
    c.t.room.control.db
      .selectFrom('outbox')
      .selectAll()
      .where('channel', '=', 'webhook')
      .orderBy('created_at')
      .execute();

  it('retries a failing endpoint on the schedule with the same webhook-id, and delivers once when it recovers', async () => {
    c.receiver.mode = 'fail';
    await push(c, 'acme', week('2026-11-16', 'acme', 100, 10, 'a'));
    await settle(c);
    const ids = new Set(c.receiver.received.map((h) => h.headers['webhook-id']));
    // /acme gets the combined and the acme-scope incident, /globex the combined one.
    expect(ids.size).toBe(3);
    expect(c.receiver.received).toHaveLength(3);
    // Standard Webhooks' schedule: 5 s, then 5 min, then 30 min; not before.
    c.clock.advance(4_000);
    await settle(c);
    expect(c.receiver.received).toHaveLength(3);
    c.clock.advance(1_000);
    await settle(c);
    expect(c.receiver.received).toHaveLength(6);
    c.clock.advance(299_000);
    await settle(c);
    expect(c.receiver.received).toHaveLength(6);
    c.clock.advance(1_000);
    await settle(c);
    expect(c.receiver.received).toHaveLength(9);
    const rows = await outbox();
    expect(rows.map((r) => [r.state, r.attempts])).toEqual([
      ['pending', 3],
      ['pending', 3],
      ['pending', 3],
    ]);
    expect(rows[0]!.last_error).toBe('HTTP 503');
    c.receiver.mode = 'ok';
    c.clock.advance(1_800_000);
    await settle(c);
    expect(c.receiver.received).toHaveLength(12);
    // Every attempt carried its message's one webhook-id; each id was delivered exactly once.
    const perId = new Map<string, number>();
    for (const h of c.receiver.received) expect(ids.has(h.headers['webhook-id'])).toBe(true);
    for (const h of c.receiver.delivered)
      perId.set(String(h.headers['webhook-id']), (perId.get(String(h.headers['webhook-id'])) ?? 0) + 1);
    expect([...perId.values()]).toEqual([1, 1, 1]);
    expect((await outbox()).map((r) => [r.state, r.attempts])).toEqual([
      ['delivered', 4],
      ['delivered', 4],
      ['delivered', 4],
    ]);
    // Nothing more is sent later.
    c.clock.advance(86_400_000);
    await settle(c);
    expect(c.receiver.received).toHaveLength(12);
  });

  it('an endpoint answering 410 Gone is disabled: later notifications to it are not sent', async () => {
    c.receiver.mode = 'gone';
    c.receiver.received.length = 0;
    await push(c, 'globex', week('2026-11-16', 'globex', 100, 10, 'g'));
    await settle(c);
    expect(c.receiver.received.map((h) => h.path)).toEqual(['/globex']);
    const hooks = (await call(c, 'GET', '/v1/webhooks', c.tokens.adminGlobex)).body.webhooks as {
      disabledAt: string | null;
    }[];
    expect(hooks[0]!.disabledAt).not.toBeNull();
    // The steering committee resolves the globex incident: the resolution is not sent to the disabled endpoint.
    const inc = (
      (await call(c, 'GET', '/v1/incidents?kpi=lead_time&scope=globex&state=active', c.tokens.steering)).body
        .incidents as Sheet[]
    )[0]!;
    expect(
      (
        await call(c, 'POST', `/v1/incidents/${inc.id}/resolve`, c.tokens.steering, {
          cause: 'other',
          narrative: 'test',
        })
      ).status,
    ).toBe(200);
    await settle(c);
    expect(c.receiver.received).toHaveLength(1);
    const rows = (await outbox()).filter((r) => r.recipient.endsWith('/globex'));
    expect(rows.map((r) => r.state)).toEqual(['delivered', 'disabled', 'disabled']);
    const audit = await c.t.room.control.db
      .selectFrom('audit_log')
      .select('action')
      .where('action', '=', 'notification.disabled')
      .execute();
    expect(audit).toHaveLength(1);
    c.receiver.mode = 'ok';
  });

  it('a slow receiver does not hold up ingest', async () => {
    // Close what is open, so the next period's breach opens (and notifies) anew.
    for (const inc of (await call(c, 'GET', '/v1/incidents?kpi=lead_time&state=active', c.tokens.steering)).body
      .incidents as Sheet[]) {
      expect(
        (
          await call(c, 'POST', `/v1/incidents/${inc.id}/resolve`, c.tokens.steering, {
            cause: 'other',
            narrative: 'test',
          })
        ).status,
      ).toBe(200);
    }
    await settle(c);
    c.receiver.mode = 'hang';
    c.receiver.received.length = 0;
    c.receiver.delivered.length = 0;
    c.clock.set('2026-11-30T09:00:00Z'); // a new closed week: 2026-11-23
    await push(c, 'acme', week('2026-11-23', 'acme', 150, 10, 'slow'));
    await c.receiver.waitFor(() => c.receiver.received.length >= 1);
    // While the receiver sits on the request, batches keep landing.
    for (let i = 0; i < 5; i++) await push(c, 'acme', week('2026-11-24', 'acme', 10, 2, `more${i}`));
    expect(c.receiver.delivered).toHaveLength(0);
    const sending = (await outbox()).filter((r) => r.state === 'sending');
    expect(sending.length).toBeGreaterThanOrEqual(1);
    c.receiver.releaseHanging();
    await c.receiver.waitFor(() => c.receiver.delivered.length >= 1);
  });
});
