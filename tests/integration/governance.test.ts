import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { TestClock } from '../../services/platform/clock.js';
import { demoAgreementFile } from '../../services/platform/paths.js';
import { leadTimePoints, ndjson } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

let t: TestRoom;
const demo = () => YAML.parse(readFileSync(demoAgreementFile(), 'utf8')) as Record<string, any>;
const clock = () => t.clock as TestClock;

async function call(
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<{ status: number; body: any; type: string | null }> {
  const r = await fetch(`${t.url}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined, type: r.headers.get('content-type') };
}

/** A change that tightens lead_time's band, lowers a threshold, adds a dimension and widens a tier. */
function loosening() {
  const a = demo();
  const lead = a.kpis.find((k: any) => k.id === 'lead_time');
  lead.band.upper = 60;
  lead.minGroupSize = 3;
  a.defaults.minGroupSize = 3;
  lead.dimensions.vehicle = ['van', 'truck'];
  const compliance = a.kpis.find((k: any) => k.id === 'compliance');
  compliance.disclosure = 'partnership';
  return a;
}

beforeAll(async () => {
  t = await startTestRoom();
});
afterAll(async () => t?.close());

describe('co-signed agreement changes', () => {
  it('no single partner changes the agreement; every partner admin approving makes it active, and results name the version', async () => {
    const acme = await t.token('acme', 'admin');
    const globex = await t.token('globex', 'admin');
    const analyst = await t.token('globex', 'analyst');
    expect(
      (await call('POST', '/v1/agreement/proposals', analyst, { document: loosening(), reason: 'tighter lead time' }))
        .status,
    ).toBe(403);

    const made = await call('POST', '/v1/agreement/proposals', acme, {
      document: loosening(),
      reason: 'tighter lead time',
    });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ state: 'open', baseVersion: 1, waitingFor: ['globex'], loosensPrivacy: true });
    // The proposer's own approval is not enough, and it cannot decide twice or for anyone else.
    expect((await call('GET', '/v1/agreement', acme)).body.version).toBe(1);
    expect((await call('POST', `/v1/agreement/proposals/${made.body.id}/approve`, acme, {})).status).toBe(409);
    expect((await call('POST', `/v1/agreement/proposals/${made.body.id}/approve`, analyst, {})).status).toBe(403);
    expect((await call('GET', `/v1/agreement/proposals/${made.body.id}`, acme)).body.waitingFor).toEqual(['globex']);
    expect((await call('GET', '/v1/agreement', acme)).body.version).toBe(1);

    const approved = await call('POST', `/v1/agreement/proposals/${made.body.id}/approve`, globex, {
      note: 'agreed in steering 2026-11-20',
    });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ state: 'active', resultVersion: 2, waitingFor: [] });
    const now = await call('GET', '/v1/agreement', acme);
    expect(now.body.version).toBe(2);
    expect(now.body.agreement.kpis.find((k: any) => k.id === 'lead_time').band.upper).toBe(60);
    const series = await call('GET', '/v1/kpis/lead_time/series?grain=week', analyst);
    expect(series.body.agreementVersion).toBe(2);
    expect(series.body.minGroupSize).toBe(3);
    const versions = await call('GET', '/v1/agreement/versions', analyst);
    expect(versions.body.versions.map((v: any) => [v.version, v.proposal])).toEqual([
      [2, made.body.id],
      [1, null],
    ]);
    const audit = await call('GET', '/v1/audit?action=agreement.', globex);
    expect(audit.body.entries.map((e: any) => e.action)).toEqual(
      expect.arrayContaining(['agreement.proposed', 'agreement.approved', 'agreement.activated']),
    );
  });

  it('the diff says each change in plain terms and names every loosening of privacy', async () => {
    const a = (await call('GET', '/v1/agreement', await t.token('acme', 'admin'))).body.agreement;
    const b = structuredClone(a);
    const lead = b.kpis.find((k: any) => k.id === 'lead_time');
    lead.band.upper = 48;
    lead.minGroupSize = 2;
    b.partners[1].minGroupSize = 1; // a partner's own threshold only ever tightens (the strictest wins)
    lead.dimensions.region.push('east');
    b.kpis.find((k: any) => k.id === 'team_satisfaction').grains.push('day');
    b.kpis.find((k: any) => k.id === 'team_satisfaction').published = true;
    b.kpis.find((k: any) => k.id === 'customer_value').needToKnow = ['cfo@acme.example'];
    b.retention = 'P10Y';
    b.partnership.title = 'Joint Delivery';
    const r = await call('POST', '/v1/agreement/proposals', await t.token('acme', 'admin'), {
      document: b,
      reason: 'diff check',
      expiresInDays: 1,
    });
    expect(r.status).toBe(201);
    const byPath = Object.fromEntries(r.body.changes.map((c: any) => [`${c.path}:${c.change}`, c]));
    expect(byPath['kpis.lead_time.band.upper:changed']).toMatchObject({
      before: 60,
      after: 48,
      loosensPrivacy: false,
      text: 'KPI lead_time: band.upper 60 → 48',
    });
    expect(byPath['partnership.title:changed'].loosensPrivacy).toBe(false);
    expect(byPath['partners.globex.minGroupSize:added'].loosensPrivacy).toBe(false);
    for (const key of [
      'kpis.lead_time.minGroupSize:changed',
      'kpis.lead_time.dimensions.region:added',
      'kpis.team_satisfaction.grains:added',
      'kpis.team_satisfaction.published:changed',
      'kpis.customer_value.needToKnow:added',
      'retention:changed',
    ]) {
      expect(byPath[key], key).toMatchObject({ loosensPrivacy: true });
      expect(byPath[key].text, key).toMatch(/loosens privacy/);
    }
    expect(r.body.changes.filter((c: any) => c.loosensPrivacy)).toHaveLength(6);
    // The first proposal's changes were flagged too: lower thresholds, a new dimension, a wider tier.
    const first = (await call('GET', '/v1/agreement/proposals', await t.token('globex', 'admin'))).body.proposals.find(
      (p: any) => p.state === 'active',
    );
    const flagged = first.changes.filter((c: any) => c.loosensPrivacy).map((c: any) => c.path);
    expect(flagged).toEqual(
      expect.arrayContaining([
        'defaults.minGroupSize',
        'kpis.lead_time.minGroupSize',
        'kpis.lead_time.dimensions.vehicle',
        'kpis.compliance.disclosure',
      ]),
    );
    expect(first.changes.find((c: any) => c.path === 'kpis.compliance.disclosure').text).toMatch(
      /wider disclosure tier \(need_to_know → partnership\)/,
    );
  });

  it('an expired proposal cannot be approved, and a new one may then be made', async () => {
    const open = (await call('GET', '/v1/agreement/proposals', await t.token('acme', 'admin'))).body.proposals.find(
      (p: any) => p.state === 'open',
    );
    clock().advance(2 * 86_400_000);
    const r = await call('POST', `/v1/agreement/proposals/${open.id}/approve`, await t.token('globex', 'admin'), {});
    expect(r.status).toBe(409);
    expect(r.body.detail).toMatch(/expired/);
    expect((await call('GET', `/v1/agreement/proposals/${open.id}`, await t.token('acme', 'admin'))).body.state).toBe(
      'expired',
    );
    expect((await call('GET', '/v1/agreement', await t.token('acme', 'admin'))).body.version).toBe(2);
  });

  it('a rejection closes the proposal', async () => {
    const a = (await call('GET', '/v1/agreement', await t.token('acme', 'admin'))).body.agreement;
    a.kpis[0].title = 'Customer value (NPS)';
    const made = await call('POST', '/v1/agreement/proposals', await t.token('globex', 'admin'), {
      document: YAML.stringify(a),
      reason: 'clearer title',
    });
    expect(made.status).toBe(201);
    expect(made.body.loosensPrivacy).toBe(false);
    const rejected = await call(
      'POST',
      `/v1/agreement/proposals/${made.body.id}/reject`,
      await t.token('acme', 'admin'),
      { reason: 'keep it' },
    );
    expect(rejected.body).toMatchObject({ state: 'rejected', waitingFor: [] });
    expect(
      (await call('POST', `/v1/agreement/proposals/${made.body.id}/approve`, await t.token('acme', 'admin'), {}))
        .status,
    ).toBe(409);
    expect((await call('GET', '/v1/agreement', await t.token('acme', 'admin'))).body.version).toBe(2);
    // globex, whose proposal was just rejected, waits a day before its next: the others' turn (a
    // red team's admin re-proposed the moment each was rejected, and the other partner never got one in).
    a.kpis[0].title = 'Customer value (net promoter score)';
    const again = await call('POST', '/v1/agreement/proposals', await t.token('globex', 'admin'), {
      document: YAML.stringify(a),
      reason: 'clearer title, again',
    });
    expect(again.status).toBe(409);
    expect(again.body.detail).toMatch(/may propose again from/);
    const theirs = await call('POST', '/v1/agreement/proposals', await t.token('acme', 'admin'), {
      document: YAML.stringify(a),
      reason: 'our turn',
    });
    expect(theirs.status, JSON.stringify(theirs.body)).toBe(201);
    await call('POST', `/v1/agreement/proposals/${theirs.body.id}/reject`, await t.token('globex', 'admin'), {
      reason: 'not now',
    });
    // A day later both may propose again (the tests after this one do).
    (t.clock as TestClock).advance(24 * 3_600_000 + 1000);
  });

  it('bad proposals get a 400 naming the field; nothing is stored', async () => {
    const admin = await t.token('acme', 'admin');
    const before = (await call('GET', '/v1/agreement/proposals', admin)).body.proposals.length;
    const bad = demo();
    bad.kpis[1].band.upper = 'high';
    const cases: [unknown, string][] = [
      [{ document: bad, reason: 'x' }, 'body.document.kpis[1].band.upper'],
      [{ document: 'kpis: [unclosed', reason: 'x' }, 'body.document'],
      // Nested past 64 levels: refused before the YAML parser, which spent seconds on it.
      [{ document: '['.repeat(250_000), reason: 'x' }, 'deeper than 64 levels'],
      [{ document: `kpis: ${'{a: '.repeat(60_000)}`, reason: 'x' }, 'deeper than 64 levels'],
      [{ document: `${'- '.repeat(100_000)}x`, reason: 'x' }, 'indented or nested deeper than 32 levels'],
      // Past 256 KiB of text: refused by its length before anything reads it.
      [{ document: '['.repeat(300_000), reason: 'x' }, 'at most 256 KiB'],
      [{ document: loosening() }, 'body.reason'],
      [{ document: loosening(), reason: '   ' }, 'body.reason'],
      [{ document: loosening(), reason: 'x', expiresInDays: 400 }, 'body.expiresInDays'],
      [{ document: loosening(), reason: 'x', extra: 1 }, 'body'],
      [{ document: (await call('GET', '/v1/agreement', admin)).body.agreement, reason: 'same' }, 'body.document'],
      [
        { document: { ...loosening(), partnership: { ...demo().partnership, id: 'other' } }, reason: 'x' },
        'body.document.partnership.id',
      ],
      // YAML's escapes write NUL, half a surrogate pair and control characters past the JSON
      // routes' check on the request's text: PostgreSQL refused the first two with a 500.
      ...['\\0', '\\uD800', '\\uDC00', '\\e', '\\x9b', '\\x7f'].map((escape): [unknown, string] => [
        {
          document: YAML.stringify({ ...loosening(), partnership: { ...demo().partnership, title: 'TITLE' } }).replace(
            'title: TITLE',
            `title: "Joint${escape}Delivery"`,
          ),
          reason: 'x',
        },
        'body.document.partnership.title',
      ]),
    ];
    for (const [body, field] of cases) {
      const r = await call('POST', '/v1/agreement/proposals', admin, body);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(r.type).toMatch(/application\/problem\+json/);
      expect(JSON.stringify(r.body), field).toContain(field);
    }
    const twoParty = demo();
    twoParty.kpis[0].breakdown = 'combined';
    const r = await call('POST', '/v1/agreement/proposals', admin, { document: twoParty, reason: 'x' });
    expect(r.status).toBe(400);
    expect(r.body.field).toBe('body.document.kpis[0].breakdown');
    expect((await call('POST', '/v1/agreement/proposals/prp_nope/approve', admin, {})).status).toBe(404);
    expect((await call('POST', '/v1/agreement/proposals/x/reject', admin, {})).status).toBe(400);
    expect((await call('GET', '/v1/agreement/proposals', admin)).body.proposals.length).toBe(before);
  });
});

describe('tokens and users', () => {
  it("a partner admin issues, lists, revokes and rotates its own partner's tokens; the token is shown once", async () => {
    const admin = await t.token('acme', 'admin');
    const issued = await call('POST', '/v1/tokens', admin, { role: 'analyst', name: 'maria@acme.example' });
    expect(issued.status).toBe(201);
    expect(issued.body).toMatchObject({ partner: 'acme', role: 'analyst', name: 'maria@acme.example', state: 'live' });
    expect((await call('GET', '/v1/kpis', issued.body.token)).status).toBe(200);
    const list = await call('GET', '/v1/tokens', admin);
    expect(list.body.tokens.some((x: any) => x.id === issued.body.id)).toBe(true);
    const listed = (await call('GET', '/v1/audit?action=token.listed', admin)).body.entries;
    expect(listed.at(-1)).toMatchObject({ partner: 'acme', details: { returned: list.body.tokens.length } });
    expect(JSON.stringify(list.body)).not.toContain(issued.body.token);
    expect(list.body.tokens.every((x: any) => x.partner === 'acme')).toBe(true);
    const stored = await t.room.control.db
      .selectFrom('tokens')
      .select('token_hash')
      .where('id', '=', issued.body.id)
      .executeTakeFirstOrThrow();
    expect(stored.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored.token_hash).not.toContain(issued.body.token);

    // Another partner's admin cannot see or touch it.
    expect((await call('DELETE', `/v1/tokens/${issued.body.id}`, await t.token('globex', 'admin'))).status).toBe(404);
    expect((await call('GET', '/v1/tokens', await t.token('acme', 'analyst'))).status).toBe(403);

    const revoked = await call('DELETE', `/v1/tokens/${issued.body.id}`, admin);
    expect(revoked.body.state).toBe('revoked');
    expect((await call('GET', '/v1/kpis', issued.body.token)).status).toBe(401);
    expect((await call('POST', '/v1/session', undefined, { token: issued.body.token })).status).toBe(401);
    expect((await call('DELETE', `/v1/tokens/${issued.body.id}`, admin)).status).toBe(409);
  });

  it('an expired token is refused at once', async () => {
    const admin = await t.token('acme', 'admin');
    const issued = await call('POST', '/v1/tokens', admin, {
      role: 'ingest',
      name: 'erp',
      expiresAt: new Date(t.clock.now().getTime() + 60_000).toISOString(),
    });
    expect(issued.status).toBe(201);
    expect((await call('GET', '/v1/batches/none', issued.body.token)).status).toBe(404);
    clock().advance(60_001);
    expect((await call('GET', '/v1/batches/none', issued.body.token)).status).toBe(401);
  });

  it('rotation gives two valid tokens during the overlap, then only the new one', async () => {
    const admin = await t.token('globex', 'admin');
    const old = await call('POST', '/v1/tokens', admin, { role: 'analyst', name: 'li@globex.example' });
    const rotated = await call('POST', `/v1/tokens/${old.body.id}/rotate`, admin, { overlapHours: 2 });
    expect(rotated.status).toBe(201);
    expect(rotated.body).toMatchObject({ replaces: old.body.id, name: 'li@globex.example', role: 'analyst' });
    expect((await call('GET', '/v1/kpis', old.body.token)).status).toBe(200);
    expect((await call('GET', '/v1/kpis', rotated.body.token)).status).toBe(200);
    // Rotated once: during its overlap, further rotations of it mint no second heir; of rotations
    // at once, one wins.
    const other = await call('POST', '/v1/tokens', admin, { role: 'analyst', name: 'mo@globex.example' });
    const race = await Promise.all([1, 2, 3, 4].map(() => call('POST', `/v1/tokens/${other.body.id}/rotate`, admin)));
    expect(race.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
    const again = await Promise.all([1, 2, 3].map(() => call('POST', `/v1/tokens/${old.body.id}/rotate`, admin, {})));
    expect(again.map((r) => r.status)).toEqual([409, 409, 409]);
    expect(again[0]!.body.detail).toContain(rotated.body.id);
    const heirs = (await call('GET', '/v1/tokens', admin)).body.tokens.filter((x: any) => x.replaces === old.body.id);
    expect(heirs.map((x: any) => x.id)).toEqual([rotated.body.id]);
    clock().advance(2 * 3_600_000 + 1);
    expect((await call('GET', '/v1/kpis', old.body.token)).status).toBe(401);
    expect((await call('GET', '/v1/kpis', rotated.body.token)).status).toBe(200);
    expect((await call('POST', `/v1/tokens/${old.body.id}/rotate`, admin, {})).status).toBe(409);
    const audit = (await call('GET', '/v1/audit?action=token.', admin)).body.entries;
    expect(audit.map((e: any) => e.action)).toEqual(expect.arrayContaining(['token.created', 'token.rotated']));
    expect(JSON.stringify(audit)).not.toContain(rotated.body.token);
  });

  it('bad token requests get a 400 or 403 naming the field', async () => {
    const admin = await t.token('acme', 'admin');
    const cases: [unknown, number, string][] = [
      [{ role: 'steering', name: 'me' }, 400, 'body.role'],
      [{ role: 'operator', name: 'me' }, 400, 'body.role'],
      [{ role: 'analyst' }, 400, 'body.name'],
      [{ role: 'analyst', name: 'x', expiresAt: 'tomorrow' }, 400, 'body.expiresAt'],
      [{ role: 'analyst', name: 'x', expiresAt: '2020-01-01T00:00:00Z' }, 400, 'body.expiresAt'],
      [{ role: 'analyst', name: 'dpo@globex.example' }, 403, 'body.name'],
      [{ role: 'analyst', name: 'x', partner: 'globex' }, 400, 'body'],
    ];
    for (const [body, status, field] of cases) {
      const r = await call('POST', '/v1/tokens', admin, body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(JSON.stringify(r.body)).toContain(field);
    }
    expect((await call('POST', '/v1/tokens/tok_x/rotate', admin, { overlapHours: 1000 })).status).toBe(400);
  });
});

describe('audit log', () => {
  it("each partner reads its own entries and the shared ones, never another partner's", async () => {
    await call('GET', '/v1/kpis', await t.token('globex', 'analyst'));
    await call('GET', '/v1/kpis', await t.token('acme', 'analyst'));
    const acme = [];
    for (let after = 0; ;) {
      const page = await call('GET', `/v1/audit?after=${after}&limit=50`, await t.token('acme', 'analyst'));
      acme.push(...page.body.entries);
      if (page.body.next === null) break;
      after = page.body.next;
    }
    expect(acme.length).toBeGreaterThan(10);
    expect(
      acme
        .filter((e: any) => !e.action.startsWith('agreement.'))
        .every((e: any) => e.partner === 'acme' || e.partner === null),
    ).toBe(true);
    expect(acme.some((e: any) => e.partner === 'globex' && e.action === 'agreement.proposed')).toBe(true);
    const all = (await call('GET', '/v1/audit?limit=1000', await t.token('acme', 'steering'))).body.entries;
    expect(all.some((e: any) => e.partner === 'globex')).toBe(true);
    expect((await call('GET', '/v1/audit', await t.token('acme', 'ingest'))).status).toBe(403);
    expect((await call('GET', '/v1/audit?limit=0', await t.token('acme', 'analyst'))).body.field).toBe(
      'querystring.limit',
    );
    expect((await call('GET', "/v1/audit?action=x'%20OR%201=1", await t.token('acme', 'analyst'))).body.field).toBe(
      'querystring.action',
    );
  });

  it('a refused sign-in is an audit entry; verify recomputes the chain and finds a tampered row', async () => {
    const steering = await t.token('acme', 'steering');
    const earlier = (await call('GET', '/v1/audit?action=session.refused', steering)).body.entries.length;
    expect((await call('POST', '/v1/session', undefined, { token: 'pty_not_a_token' })).status).toBe(401);
    const refused = (await call('GET', '/v1/audit?action=session.refused', steering)).body.entries.slice(earlier);
    expect(refused).toHaveLength(1);
    expect(JSON.stringify(refused)).not.toContain('pty_not_a_token');
    const ok = await call('GET', '/v1/audit/verify', steering);
    expect(ok.body).toMatchObject({ ok: true });
    const target = refused[0].seq;
    await sql`ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update`.execute(t.room.control.db);
    await sql`UPDATE audit_log SET actor = 'someone else' WHERE seq = ${target}`.execute(t.room.control.db);
    await sql`ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update`.execute(t.room.control.db);
    const broken = await call('GET', '/v1/audit/verify', steering);
    expect(broken.body).toMatchObject({ ok: false, brokenAt: target });
  });
});

describe('metadata report', () => {
  // Values no count or time could spell: each one is searched for in the report.
  const pushed = (partner: string, n: number) =>
    leadTimePoints(n, `${partner.toUpperCase()}-ORDER`).map((p, i) => ({
      ...p,
      value: Number(`4${i % 10}.${String(7_000_001 + i * 37)}`),
    }));

  it('counts batches, points, reads and suppressed cells per partner, feed and KPI — and holds no value or pseudonym', async () => {
    const acmePoints = pushed('acme', 300);
    const globexPoints = pushed('globex', 200);
    for (const [partner, pts] of [
      ['acme', acmePoints],
      ['globex', globexPoints],
    ] as const) {
      const body = ndjson(pts) + JSON.stringify({ kpi: 'lead_time', at: 'yesterday', value: 1, subject: 'X' }) + '\n';
      const r = await fetch(`${t.url}/v1/points?partial=true`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await t.token(partner, 'ingest')}`,
          'content-type': 'application/x-ndjson',
        },
        body,
      });
      expect(r.status).toBe(202);
    }
    const series = await call(
      'GET',
      '/v1/kpis/lead_time/series?grain=day&by=partner&from=2026-11-01&to=2026-11-22',
      await t.token('acme', 'analyst'),
    );
    expect(series.status).toBe(200);
    const suppressed = series.body.cells.filter((c: any) => c.state === 'suppressed').length;
    await call('GET', '/v1/kpis', await t.token('globex', 'analyst'));

    const operator = await t.token(null, 'operator');
    const r = await call('GET', '/v1/transparency?month=2026-11', operator);
    expect(r.status).toBe(200);
    const report = r.body;
    expect(report).toMatchObject({
      partnership: 'joint-delivery',
      month: '2026-11',
      from: '2026-10-31T23:00:00.000Z',
      to: '2026-11-30T23:00:00.000Z',
    });
    // The operator reads batches and arrival times, never a point count (docs/privacy.md §4).
    expect(report.partners).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ partner: 'acme', batches: 1, pointsAccepted: null, pointsRejected: null }),
        expect.objectContaining({ partner: 'globex', batches: 1, pointsAccepted: null, pointsRejected: null }),
      ]),
    );
    expect(report.feeds.find((f: any) => f.partner === 'acme' && f.kpi === 'lead_time')).toMatchObject({
      batches: 1,
      points: null,
      stale: false,
    });
    expect(report.feeds.find((f: any) => f.partner === 'acme' && f.kpi === 'compliance')).toMatchObject({
      batches: 0,
      points: null,
      lastArrival: null,
    });
    // A partner reads its own counts.
    const asAcme = (await call('GET', '/v1/transparency?month=2026-11', await t.token('acme', 'admin'))).body;
    expect(asAcme.partners).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ partner: 'acme', batches: 1, pointsAccepted: 300, pointsRejected: 1 }),
        expect.objectContaining({ partner: 'globex', batches: 1, pointsAccepted: null, pointsRejected: null }),
      ]),
    );
    expect(asAcme.feeds.find((f: any) => f.partner === 'acme' && f.kpi === 'lead_time')).toMatchObject({
      points: 300,
    });
    // Steering members work for a partner: their own partner's counts only.
    const asSteering = (await call('GET', '/v1/transparency?month=2026-11', await t.token('globex', 'steering'))).body;
    expect(asSteering.partners.find((p: any) => p.partner === 'acme').pointsAccepted).toBeNull();
    expect(asSteering.feeds.find((f: any) => f.partner === 'acme' && f.kpi === 'lead_time').points).toBeNull();
    const reads = report.queries.filter(
      (q: any) => q.kpi === 'lead_time' && q.partner === 'acme' && q.role === 'analyst',
    );
    expect(reads.length).toBe(1);
    expect(reads[0].requests).toBeGreaterThanOrEqual(1);
    expect(reads[0].cellsSuppressed).toBeGreaterThanOrEqual(suppressed);
    expect(
      report.queries.some((q: any) => q.partner === 'globex' && q.role === 'analyst' && q.kpi === 'customer_value'),
    ).toBe(true);
    expect(report.agreementChanges.map((c: any) => c.action)).toEqual(
      expect.arrayContaining(['agreement.proposed', 'agreement.approved', 'agreement.activated', 'agreement.rejected']),
    );

    // Another partner's point count per KPI is withheld (for a count KPI it would be the figure).
    const asGlobex = (await call('GET', '/v1/transparency?month=2026-11', await t.token('globex', 'analyst'))).body;
    expect(asGlobex.feeds.find((f: any) => f.partner === 'acme' && f.kpi === 'lead_time')).toMatchObject({
      batches: 1,
      points: null,
    });
    expect(asGlobex.feeds.find((f: any) => f.partner === 'globex' && f.kpi === 'lead_time')).toMatchObject({
      batches: 1,
      points: 200,
    });
    const csv = await fetch(`${t.url}/v1/transparency?month=2026-11&format=csv`, {
      headers: { authorization: `Bearer ${await t.token('acme', 'analyst')}` },
    });
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(csv.headers.get('content-disposition')).toContain('parity-transparency-joint-delivery-2026-11.csv');
    const text = await csv.text();
    expect(text.split('\n')[0]).toBe('section,partner,kpi,role_or_channel,measure,count,at');
    expect(text).toContain('feeds,acme,lead_time,,points,300,');
    expect(text).toContain('feeds,globex,lead_time,,points,,');

    // Checked against the data pushed and what the room stored: no value, subject or pseudonym anywhere.
    const conn = await t.room.duck.connect();
    const pseudonyms = (await conn.runAndReadAll(`SELECT DISTINCT subject FROM points`))
      .getRowObjectsJson()
      .map((x) => String(x['subject']));
    t.room.duck.release(conn);
    expect(pseudonyms.length).toBe(500);
    const everything = JSON.stringify(report) + text;
    for (const p of [...acmePoints, ...globexPoints]) {
      expect(everything).not.toContain(String(p.value));
      expect(everything).not.toContain(p.subject);
    }
    for (const ps of pseudonyms) expect(everything).not.toContain(ps);
  });

  it('bad months and formats get a 400 naming the parameter; ingest tokens get 403', async () => {
    const analyst = await t.token('acme', 'analyst');
    for (const [q, field] of [
      ['month=2026-13', 'querystring.month'],
      ['month=26-11', 'querystring.month'],
      ["month=2026-11'--", 'querystring.month'],
      ['format=xml', 'querystring.format'],
      ['month=2026-11&x=1', 'querystring'],
    ] as const) {
      const r = await call('GET', `/v1/transparency?${q}`, analyst);
      expect(r.status, q).toBe(400);
      expect(JSON.stringify(r.body), q).toContain(field);
    }
    expect((await call('GET', '/v1/transparency', await t.token('acme', 'ingest'))).status).toBe(403);
    expect((await call('GET', '/v1/transparency', undefined)).status).toBe(401);
  });
});

describe('operator role', () => {
  it('gets 403 on every value-bearing endpoint and reads health, the metadata report and the audit log', async () => {
    const op = await t.token(null, 'operator');
    const refused: [string, string, unknown?][] = [
      ['GET', '/v1/kpis'],
      ['GET', '/v1/kpis/lead_time/series'],
      ['GET', '/v1/kpis/lead_time/series?format=csv'],
      ['GET', '/v1/breaches'],
      ['GET', '/v1/incidents'],
      ['GET', '/v1/incidents/inc_x'],
      ['POST', '/v1/incidents/inc_x/ack', {}],
      [
        'POST',
        '/v1/incidents/inc_x/resolve',
        { cause: 'process', narrative: 'n', actions: [{ description: 'w', owner: 'o', due: '2026-12-01' }] },
      ],
      ['GET', '/v1/notifications'],
      ['GET', '/v1/webhooks'],
      ['GET', '/v1/batches/b_x'],
      ['GET', '/v1/tokens'],
      ['POST', '/v1/agreement/proposals', { document: loosening(), reason: 'x' }],
    ];
    for (const [method, path, body] of refused) {
      const r = await call(method, path, op, body);
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(403);
      expect(r.type).toMatch(/problem\+json/);
    }
    const points = await fetch(`${t.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${op}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(leadTimePoints(1)),
    });
    expect(points.status).toBe(403);
    for (const path of [
      '/v1/transparency',
      '/v1/audit',
      '/v1/audit/verify',
      '/v1/agreement',
      '/v1/agreement/versions',
      '/v1/agreement/proposals',
    ]) {
      expect((await call('GET', path, op)).status, path).toBe(200);
    }
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
  });
});

describe('need-to-know in the audit log and the metadata report', () => {
  it('a reader who may not see a need-to-know KPI finds not even its id; steering and the operator do', async () => {
    const own = await startTestRoom();
    try {
      const { createToken } = await import('../../services/governance/token-repository.js');
      const dpo = (
        await createToken(
          own.room.control.db,
          { partnerId: 'acme', role: 'analyst', name: 'dpo@acme.example' },
          own.clock.now(),
        )
      ).token;
      const get = async (path: string, token: string) =>
        (await fetch(`${own.url}${path}`, { headers: { authorization: `Bearer ${token}` } })).text();
      const ingest = await own.token('acme', 'ingest');
      const body = ndjson(
        Array.from({ length: 6 }, (_, i) => ({
          kpi: 'compliance',
          at: '2026-11-10T10:00:00Z',
          value: i % 2,
          subject: `CTRL-${i}`,
        })),
      );
      expect(
        (
          await fetch(`${own.url}/v1/points`, {
            method: 'POST',
            headers: { authorization: `Bearer ${ingest}`, 'content-type': 'application/x-ndjson' },
            body,
          })
        ).status,
      ).toBe(202);
      expect(await get('/v1/kpis/compliance/series?grain=month', dpo)).toContain('"kpi":"compliance"');
      const analyst = await own.token('acme', 'analyst');
      expect(await get('/v1/audit?limit=1000', analyst)).not.toContain('compliance');
      expect(await get('/v1/transparency', analyst)).not.toContain('compliance');
      expect(await get('/v1/transparency?format=csv', analyst)).not.toContain('compliance');
      expect(await get('/v1/audit?limit=1000', dpo)).toContain('compliance');
      expect(await get('/v1/transparency', await own.token('acme', 'steering'))).toContain('compliance');
      // A partner admin reads no need-to-know KPI it is not named on (the next describe).
      expect(await get('/v1/transparency', await own.token('acme', 'admin'))).not.toContain('compliance');
      expect(await get('/v1/transparency', await own.token(null, 'operator'))).toContain('compliance');
    } finally {
      await own.close();
    }
  });
});

describe('the metadata report counts only what its reader may read', () => {
  it("a hidden KPI's batches, points and notifications (its incidents' messages, comments on them) are left out of every count", async () => {
    const own = await startTestRoom();
    try {
      const { createToken } = await import('../../services/governance/token-repository.js');
      const named = async (partnerId: string, name: string) =>
        (await createToken(own.room.control.db, { partnerId, role: 'analyst', name }, own.clock.now())).token;
      const dpo = await named('globex', 'dpo@globex.example');
      const call = async (method: string, path: string, token: string, body?: unknown) => {
        const r = await fetch(`${own.url}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        return { status: r.status, body: (await r.json()) as unknown };
      };
      const push = async (points: { kpi: string; at: string; value: number; subject: string }[]) => {
        const r = await fetch(`${own.url}/v1/points`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${await own.token('globex', 'ingest')}`,
            'content-type': 'application/x-ndjson',
          },
          body: ndjson(points),
        });
        expect(r.status).toBe(202);
      };
      // The need-to-know KPI below its band in a closed month (an incident, its messages kept for
      // the dashboard), then one batch of a KPI everyone reads.
      await push(
        Array.from({ length: 7 }, (_, i) => ({
          kpi: 'compliance',
          at: '2026-10-12T10:00:00Z',
          value: i % 2,
          subject: `C-${i}`,
        })),
      );
      await push(leadTimePoints(5).map((p) => ({ ...p, at: '2026-11-20T10:00:00Z' })));
      const report = async (token: string) =>
        (await call('GET', '/v1/transparency?month=2026-11', token)).body as {
          partners: {
            partner: string;
            batches: number;
            pointsAccepted: number | null;
            pointsRejected: number | null;
          }[];
          feeds: { kpi: string }[];
          notifications: { channel: string; partner: string | null; state: string; count: number }[];
        };
      const operator = await own.token(null, 'operator');
      const deadline = Date.now() + timeout(30_000);
      let incident: string | undefined;
      while (!incident && Date.now() < deadline) {
        const r = await call('GET', '/v1/incidents', dpo);
        incident = (r.body as { incidents?: { id: string; kpi: { id: string } }[] }).incidents?.find(
          (i) => i.kpi.id === 'compliance',
        )?.id;
        if (!incident) await new Promise((r) => setTimeout(r, 50));
      }
      expect(incident).toBeDefined();
      // A comment on the hidden KPI's incident mentioning acme's reader: one more message about it.
      const comment = await call('POST', `/v1/threads/incident/${incident}`, dpo, {
        text: 'over to @dpo@acme.example',
      });
      expect(comment.status, JSON.stringify(comment.body)).toBe(201);
      // A note on the hidden KPI and a comment on the note mentioning acme's reader: the message
      // is about the KPI through the note (the annotation join), not through an incident.
      const note = await call('POST', '/v1/kpis/compliance/annotations', dpo, {
        scope: 'globex',
        from: '2026-10-12',
        text: 'A new control set went live.',
      });
      expect(note.status, JSON.stringify(note.body)).toBe(201);
      const onNote = await call('POST', `/v1/threads/annotation/${(note.body as { id: string }).id}`, dpo, {
        text: 'see the new set, @dpo@acme.example',
      });
      expect(onNote.status, JSON.stringify(onNote.body)).toBe(201);
      const total = (r: Awaited<ReturnType<typeof report>>) => r.notifications.reduce((t, n) => t + n.count, 0);

      const whole = await report(operator);
      const all = total(whole);
      expect(all).toBeGreaterThanOrEqual(3);
      expect(whole.partners.find((p) => p.partner === 'globex')?.batches).toBe(2);
      // The named reader counts the same messages and batches, and its own points on both KPIs.
      const named_ = await report(dpo);
      expect(total(named_)).toBe(all);
      expect(named_.partners.find((p) => p.partner === 'globex')).toMatchObject({ batches: 2, pointsAccepted: 12 });
      // A reader of globex who may not read compliance: no message about it, one batch, the visible feed's points.
      const analyst = await report(await own.token('globex', 'analyst'));
      expect(total(analyst)).toBe(0);
      expect(analyst.feeds.map((f) => f.kpi)).not.toContain('compliance');
      expect(analyst.partners.find((p) => p.partner === 'globex')).toMatchObject({
        batches: 1,
        pointsAccepted: 5,
        pointsRejected: null,
      });
      // Another partner's reader likewise.
      const acme = await report(await own.token('acme', 'analyst'));
      expect(total(acme)).toBe(0);
      expect(acme.partners.find((p) => p.partner === 'globex')?.batches).toBe(1);
      // Steering reads every KPI's metadata.
      expect(total(await report(await own.token('acme', 'steering')))).toBe(all);
      // A partner admin reads no need-to-know KPI it is not named on: its report, like an
      // analyst's, says nothing of one (it once counted the hidden KPI's incidents, by scope).
      const admin = (await call('GET', '/v1/transparency?month=2026-11', await own.token('acme', 'admin'))).body as {
        incidents: { kpi: string }[];
        notifications: { count: number }[];
      };
      const asDpo = (await call('GET', '/v1/transparency?month=2026-11', dpo)).body as typeof admin;
      expect(asDpo.incidents.map((i) => i.kpi)).toContain('compliance');
      expect(admin.incidents.map((i) => i.kpi)).not.toContain('compliance');
      expect(total(await report(await own.token('acme', 'admin')))).toBe(0);
    } finally {
      await own.close();
    }
  });
});

describe('partners joining and leaving, and what admins may not mint', () => {
  it("a new partner joins on the current partners' approvals; a leaving partner must approve too, and its tokens are revoked with the new version", async () => {
    const own = await startTestRoom();
    try {
      const { createToken } = await import('../../services/governance/token-repository.js');
      const req = async (method: string, path: string, token: string, body?: unknown) => {
        const r = await fetch(`${own.url}${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
        return { status: r.status, body: (await r.json()) as any };
      };
      const [acme, globex] = [await own.token('acme', 'admin'), await own.token('globex', 'admin')];
      const three = demo();
      three.partners.push({ id: 'initech', name: 'Initech Parcels' });
      const join = await req('POST', '/v1/agreement/proposals', acme, { document: three, reason: 'Initech joins' });
      expect(join.body).toMatchObject({ requiredPartners: ['acme', 'globex'], waitingFor: ['globex'] });
      expect(join.body.changes.find((c: any) => c.path === 'partners.initech')).toMatchObject({
        change: 'added',
        loosensPrivacy: true,
      });
      expect((await req('POST', `/v1/agreement/proposals/${join.body.id}/approve`, globex, {})).body.state).toBe(
        'active',
      );

      const initechAdmin = (
        await createToken(
          own.room.control.db,
          { partnerId: 'initech', role: 'admin', name: 'admin@initech.example' },
          own.clock.now(),
        )
      ).token;
      const initechAnalyst = (
        await createToken(
          own.room.control.db,
          { partnerId: 'initech', role: 'analyst', name: 'ana@initech.example' },
          own.clock.now(),
        )
      ).token;
      expect((await req('GET', '/v1/kpis', initechAnalyst)).status).toBe(200);

      const leave = await req('POST', '/v1/agreement/proposals', acme, { document: demo(), reason: 'Initech leaves' });
      expect(leave.body).toMatchObject({
        requiredPartners: ['acme', 'globex', 'initech'],
        waitingFor: ['globex', 'initech'],
      });
      expect((await req('POST', `/v1/agreement/proposals/${leave.body.id}/approve`, globex, {})).body.state).toBe(
        'open',
      );
      expect((await req('POST', `/v1/agreement/proposals/${leave.body.id}/approve`, initechAdmin, {})).body.state).toBe(
        'active',
      );
      expect((await req('GET', '/v1/kpis', initechAnalyst)).status).toBe(401);
      expect((await req('GET', '/v1/kpis', initechAdmin)).status).toBe(401);
      const revoked = await own.room.control.db
        .selectFrom('audit_log')
        .select(['action', 'partner_id'])
        .where('action', '=', 'token.revoked')
        .execute();
      expect(revoked.filter((r) => r.partner_id === 'initech')).toHaveLength(2);
    } finally {
      await own.close();
    }
  });

  it("an admin cannot rotate a host-issued token or name a token after another partner's owner; its own owner on an owner token is fine", async () => {
    const admin = await t.token('acme', 'admin');
    const { createToken } = await import('../../services/governance/token-repository.js');
    const steering = await createToken(
      t.room.control.db,
      { partnerId: 'acme', role: 'steering', name: 'chair@joint.example' },
      t.clock.now(),
    );
    const r = await call('POST', `/v1/tokens/${steering.id}/rotate`, admin, {});
    expect(r.status).toBe(403);
    expect(r.body.detail).toMatch(/host/);
    expect((await call('GET', '/v1/kpis', steering.token)).status).toBe(200);
    const other = await call('POST', '/v1/tokens', admin, { role: 'analyst', name: 'gus@globex.example' });
    expect(other.status).toBe(403);
    expect(other.body.field).toBe('body.name');
    expect((await call('POST', '/v1/tokens', admin, { role: 'analyst', name: 'ana@acme.example' })).status).toBe(403);
    expect((await call('POST', '/v1/tokens', admin, { role: 'owner', name: 'ana@acme.example' })).status).toBe(201);
  });

  it('a proposal names the existing tokens it would let read more', async () => {
    const admin = await t.token('acme', 'admin');
    const maria = await call('POST', '/v1/tokens', admin, { role: 'analyst', name: 'Auditor@acme.example' });
    expect(maria.status).toBe(201);
    const doc = (await call('GET', '/v1/agreement', admin)).body.agreement;
    doc.kpis.find((k: any) => k.id === 'customer_value').needToKnow.push('auditor@acme.example');
    const made = await call('POST', '/v1/agreement/proposals', admin, {
      document: doc,
      reason: 'the auditor reads customer value',
    });
    expect(made.status).toBe(201);
    expect(made.body.widensTokens).toEqual([
      { id: maria.body.id, partner: 'acme', role: 'analyst', name: 'Auditor@acme.example' },
    ]);
    expect(
      (
        await call('POST', `/v1/agreement/proposals/${made.body.id}/reject`, await t.token('globex', 'admin'), {
          reason: 'not now',
        })
      ).body.state,
    ).toBe('rejected');
  });
});

describe('more bad input on the governance endpoints', () => {
  it('names the field and changes nothing', async () => {
    const admin = await t.token('acme', 'admin');
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/v1/tokens/tok_x/rotate', { overlapHours: 'soon' }, 400, 'body.overlapHours'],
      ['POST', '/v1/tokens/tok_x/rotate', { overlapHours: -1 }, 400, 'body.overlapHours'],
      ['DELETE', `/v1/tokens/${'x'.repeat(65)}`, undefined, 400, 'params.id'],
      ['GET', '/v1/audit?after=-1', undefined, 400, 'querystring.after'],
      ['GET', '/v1/audit?limit=abc', undefined, 400, 'querystring.limit'],
      ['POST', '/v1/agreement/proposals/prp_x/approve', { note: 'n'.repeat(2001) }, 400, 'body.note'],
      ['POST', '/v1/agreement/proposals/prp_x/reject', { reason: '' }, 400, 'body.reason'],
      ['POST', '/v1/agreement/proposals', { document: 42, reason: 'x' }, 400, 'body.document'],
      ['POST', '/v1/agreement/proposals', { document: [], reason: 'x' }, 400, 'body.document'],
      ['GET', `/v1/agreement/proposals/${'p'.repeat(65)}`, undefined, 400, 'params.id'],
    ];
    const before = await t.room.control.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('action', 'in', [
        'token.rotated',
        'token.revoked',
        'agreement.approved',
        'agreement.rejected',
        'agreement.proposed',
      ])
      .executeTakeFirstOrThrow();
    for (const [method, path, body, status, field] of cases) {
      const r = await call(method, path, admin, body);
      expect(r.status, `${method} ${path}`).toBe(status);
      expect(r.type).toMatch(/problem\+json/);
      expect(JSON.stringify(r.body), `${method} ${path}`).toContain(field);
      expect(JSON.stringify(r.body)).not.toMatch(/at .*\.ts:\d+|SELECT|INSERT/);
    }
    const after = await t.room.control.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('action', 'in', [
        'token.rotated',
        'token.revoked',
        'agreement.approved',
        'agreement.rejected',
        'agreement.proposed',
      ])
      .executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });
});

describe('a proposal that moves the partnership to another time zone', () => {
  it('re-buckets every series in the new zone once active', async () => {
    const own = await startTestRoom();
    try {
      const ingest = await own.token('acme', 'ingest');
      // 23:30 UTC on a Sunday is Monday in Berlin, still Sunday in New York.
      const body = ndjson(
        Array.from({ length: 6 }, (_, i) => ({
          kpi: 'lead_time',
          at: '2026-11-15T23:30:00Z',
          value: 10 + i,
          subject: `TZ-${i}`,
        })),
      );
      expect(
        (
          await fetch(`${own.url}/v1/points`, {
            method: 'POST',
            headers: { authorization: `Bearer ${ingest}`, 'content-type': 'application/x-ndjson' },
            body,
          })
        ).status,
      ).toBe(202);
      const steering = await own.token('acme', 'steering');
      const day = async () =>
        (
          (await (
            await fetch(`${own.url}/v1/kpis/lead_time/series?grain=day&from=2026-11-14&to=2026-11-17`, {
              headers: { authorization: `Bearer ${steering}` },
            })
          ).json()) as { cells: { period: string; state: string }[] }
        ).cells.map((c) => [c.period, c.state]);
      expect(await day()).toEqual([['2026-11-16', 'ok']]);
      const doc = demo();
      doc.partnership.timezone = 'America/New_York';
      const [acme, globex] = [await own.token('acme', 'admin'), await own.token('globex', 'admin')];
      const made = await fetch(`${own.url}/v1/agreement/proposals`, {
        method: 'POST',
        headers: { authorization: `Bearer ${acme}`, 'content-type': 'application/json' },
        body: JSON.stringify({ document: doc, reason: 'the joint service runs from New York' }),
      });
      const id = ((await made.json()) as { id: string }).id;
      const ok = await fetch(`${own.url}/v1/agreement/proposals/${id}/approve`, {
        method: 'POST',
        headers: { authorization: `Bearer ${globex}`, 'content-type': 'application/json' },
        body: '{}',
      });
      expect(((await ok.json()) as { state: string }).state).toBe('active');
      // On New York's Sunday now, and withheld from then on: released points moved into it, so
      // its value against Monday's before would be theirs (docs/privacy.md §3).
      expect(await day()).toEqual([['2026-11-15', 'suppressed']]);
    } finally {
      await own.close();
    }
  });
});
