import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { alertsOf } from '../../services/alerts/alert-routes.js';
import { createToken } from '../../services/governance/token-repository.js';
import { TestClock } from '../../services/platform/clock.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { HookReceiver, MailCatcher, type ReceivedHook } from '../helpers/receivers.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

// Clock: 2026-11-23 (a Monday) 12:00Z. lead_time is evaluated weekly against upper 72 h; the
// last closed week starts 2026-11-16. Owners: Ana (acme, webhook /acme), Gus (globex, /globex).
const HOUR = 3_600_000;
const week = (monday: string, partner: string, hours: number, count: number, tag: string): TestPoint[] =>
  Array.from({ length: count }, (_, i) => ({ kpi: 'lead_time', at: new Date(Date.parse(`${monday}T01:00:00Z`) + i * HOUR).toISOString(), value: hours, subject: `${partner}-${tag}-${i}` }));

/** The demo agreement with lead_time's owners given webhooks on a local receiver. */
function agreementWithHooks(receiver: HookReceiver): string {
  const doc = YAML.parse(readFileSync('fixtures/demo-agreement.yaml', 'utf8')) as { kpis: { id: string; owners: Record<string, { webhook?: string }> }[] };
  const lead = doc.kpis.find((k) => k.id === 'lead_time')!;
  lead.owners['acme']!.webhook = receiver.url('/acme');
  lead.owners['globex']!.webhook = receiver.url('/globex');
  const file = join(mkdtempSync(join(tmpdir(), 'parity-agreement-')), 'agreement.json');
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

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
  const t = await startTestRoom({ clock, agreementFile: agreementWithHooks(receiver), env: { PARITY_EVALUATE_EVERY_SECONDS: '3600', ...env } });
  const named = async (partner: string, role: 'owner' | 'analyst' | 'steering' | 'admin', name: string) => (await createToken(t.room.control.db, { partnerId: partner, role, name }, clock.now())).token;
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
  const res = await fetch(`${c.t.url}/v1/points`, { method: 'POST', headers: { authorization: `Bearer ${await c.t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' }, body: ndjson(points) });
  expect(res.status).toBe(202);
}

async function call(c: Ctx, method: string, path: string, token: string | undefined, body?: unknown) {
  const res = await fetch(`${c.t.url}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: text ? JSON.parse(text) : null };
}

/** Lets evaluation and delivery finish (the schedule with `full`, as after moving the clock). */
async function settle(c: Ctx, full = false): Promise<void> {
  const a = alertsOf(c.t.room)!;
  await a.engine.idle();
  if (full) {
    a.engine.requestAll();
    await a.engine.idle();
  }
  await a.notifier.settle();
}

type Sheet = { id: string; kind: string; state: string; scope: string; value: number | null; suppressed: boolean; band: { upper: number }; snapshot: number; digest: string; source: string; escalatedAt: string | null; resolution: string | null; narrative: string | null; kpi: { id: string } };
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
    // acme: 10 orders at 100 h in the last closed week (out of band). globex: 3 orders at 500 h,
    // too few to disclose (and acme's cell is withheld with it, complementarily).
    await push(c, 'acme', week('2026-11-16', 'acme', 100, 10, 'a'));
    await push(c, 'globex', week('2026-11-16', 'globex', 500, 3, 'g'));
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
    expect(Object.keys(byScope).sort()).toEqual(['acme', 'combined', 'globex']);
    expect(byScope['combined']).toMatchObject({ state: 'notified', value: 100, suppressed: false, band: { upper: 72 } });
    expect(byScope['globex']).toMatchObject({ value: null, suppressed: true });
    expect(byScope['acme']).toMatchObject({ value: null, suppressed: true });
    await c.receiver.waitFor(() => c.receiver.delivered.length >= 4);
    const paths = c.receiver.delivered.map((h) => `${h.path}:${payloadOf(h).data.scope}`).sort();
    expect(paths).toEqual(['/acme:acme', '/acme:combined', '/globex:combined', '/globex:globex']);
  });

  it('signs every webhook per Standard Webhooks: the standardwebhooks package verifies it with the secret the partner reads', async () => {
    const hooks = async (token: string) => (await call(c, 'GET', '/v1/webhooks', token)).body.webhooks as { url: string; secret: string; kpis: string[] }[];
    const acme = await hooks(c.tokens.adminAcme);
    const globex = await hooks(c.tokens.adminGlobex);
    // Each partner sees its own endpoints only.
    expect(acme.map((h) => h.url)).toEqual([c.receiver.url('/acme')]);
    expect(globex.map((h) => h.url)).toEqual([c.receiver.url('/globex')]);
    expect(acme[0]!.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    secrets = { '/acme': acme[0]!.secret, '/globex': globex[0]!.secret };
    for (const h of c.receiver.delivered) {
      const verified = new Webhook(secrets[h.path]!).verify(h.body, h.headers as Record<string, string>) as { type: string };
      expect(verified.type).toBe('incident.opened');
      expect(h.headers['webhook-id']).toMatch(/^msg_/);
      // Another endpoint's secret does not verify it.
      const other = h.path === '/acme' ? secrets['/globex']! : secrets['/acme']!;
      expect(() => new Webhook(other).verify(h.body, h.headers as Record<string, string>)).toThrow();
    }
    // A tampered body fails verification.
    const h = c.receiver.delivered[0]!;
    expect(() => new Webhook(secrets[h.path]!).verify(h.body.replace('lead_time', 'lead_timf'), h.headers as Record<string, string>)).toThrow();
    expect((await call(c, 'GET', '/v1/webhooks', c.tokens.analystAcme)).status).toBe(403);
  });

  it('carries the snapshot and digest of the figure: the series request it names gives the same digest', async () => {
    const combined = c.receiver.delivered.map(payloadOf).find((p) => p.data.scope === 'combined')!;
    expect(combined.data.source).toMatch(/^\/v1\/kpis\/lead_time\/series\?grain=week&from=2026-11-16&to=2026-11-22&snapshot=\d+$/);
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
      const cell = (series.body.cells as { group: string | null; value: number | null }[]).find((x) => x.group === (p.data.scope === 'combined' ? null : p.data.scope));
      expect(p.data.value).toBe(cell?.value ?? null);
      expect(p.data.suppressed).toBe(cell === undefined || cell.value === null);
    }
    // globex's 3 orders are withheld at every snapshot: its scope is reported without a value.
    const globexScope = c.receiver.delivered.map(payloadOf).find((p) => p.data.scope === 'globex')!;
    expect(globexScope.data).toMatchObject({ value: null, suppressed: true });
    await mail.waitFor(() => mail.messages.length >= 4);
    for (const m of mail.messages) {
      expect(m.text).not.toMatch(/\b500\b/);
      const to = (Array.isArray(m.to) ? m.to : [m.to]).flatMap((x) => x!.value.map((v) => v.address));
      if (to.includes('ana@acme.example')) expect(m.text).not.toMatch(/Scope: globex/);
    }
  });

  it('sends an e-mail with a plain-text and an HTML fact sheet that parse', async () => {
    const toAna = mail.messages.filter((m) => (Array.isArray(m.to) ? m.to : [m.to]).some((x) => x!.value.some((v) => v.address === 'ana@acme.example')));
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
