import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, type Role } from '../../services/governance/token-repository.js';
import { createPseudonymiser } from '../../services/ingest/pseudonymiser.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { ndjson, type TestPoint } from '../helpers/points.js';

// customer_value: public + published; error_rate: public, not published; lead_time and
// team_satisfaction: partnership; compliance: need_to_know (dpo@acme.example is named).
let t: TestRoom;
const subjects: string[] = [];

function pointsFor(partner: string): TestPoint[] {
  const out: TestPoint[] = [];
  const base = Date.parse('2026-10-05T09:00:00Z');
  for (let i = 0; i < 60; i++) {
    const at = new Date(base + (i % 30) * 86_400_000).toISOString();
    const s = `${partner.toUpperCase()}-S-${i}`;
    subjects.push(s);
    out.push({ kpi: 'customer_value', at, value: i % 11, subject: s, dims: { region: i % 2 ? 'north' : 'south' } });
    out.push({ kpi: 'lead_time', at, value: 20 + i, subject: s, dims: { region: 'north' } });
    out.push({ kpi: 'error_rate', at, value: i % 7 === 0 ? 1 : 0, subject: s });
    out.push({ kpi: 'compliance', at, value: 1, subject: s });
    out.push({ kpi: 'team_satisfaction', at, value: 1 + (i % 5), subject: s });
  }
  return out;
}

beforeAll(async () => {
  t = await startTestRoom({ agreementFile: 'tests/fixtures/public-agreement.yaml' });
  for (const partner of ['acme', 'globex']) {
    const res = await fetch(`${t.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.token(partner, 'ingest')}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(pointsFor(partner)),
    });
    expect(res.status).toBe(202);
  }
});
afterAll(async () => t?.close());

const get = async (path: string, token?: string, accept?: string) => {
  const res = await fetch(`${t.url}${path}`, {
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(accept ? { accept } : {}) },
  });
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    bytes: Buffer.from(await res.arrayBuffer()),
  };
};

describe('who may read what (role × tier)', () => {
  const tiers = {
    public: 'customer_value',
    unpublished: 'error_rate',
    partnership: 'lead_time',
    need_to_know: 'compliance',
  } as const;
  type Who = 'anonymous' | Role | 'named';
  const expected: Record<Who, Record<keyof typeof tiers, number>> = {
    anonymous: { public: 200, unpublished: 401, partnership: 401, need_to_know: 401 },
    ingest: { public: 403, unpublished: 403, partnership: 403, need_to_know: 403 },
    operator: { public: 403, unpublished: 403, partnership: 403, need_to_know: 403 },
    analyst: { public: 200, unpublished: 200, partnership: 200, need_to_know: 404 },
    owner: { public: 200, unpublished: 200, partnership: 200, need_to_know: 404 },
    admin: { public: 200, unpublished: 200, partnership: 200, need_to_know: 404 },
    steering: { public: 200, unpublished: 200, partnership: 200, need_to_know: 200 },
    named: { public: 200, unpublished: 200, partnership: 200, need_to_know: 200 },
  };
  for (const [who, row] of Object.entries(expected) as [Who, Record<keyof typeof tiers, number>][]) {
    for (const [tier, status] of Object.entries(row) as [keyof typeof tiers, number][]) {
      it(`${who} reading a ${tier} KPI gets ${status}`, async () => {
        let token: string | undefined;
        if (who === 'named')
          token = (
            await createToken(
              t.room.control.db,
              { partnerId: 'acme', role: 'analyst', name: 'dpo@acme.example' },
              t.clock.now(),
            )
          ).token;
        else if (who === 'operator') token = await t.token(null, 'operator');
        else if (who !== 'anonymous') token = await t.token('globex', who);
        // Every per-KPI endpoint answers alike: the series and its bands.
        for (const path of [
          `/v1/kpis/${tiers[tier]}/series?grain=week&from=2026-10-01&to=2026-11-10`,
          `/v1/kpis/${tiers[tier]}/bands?from=2026-10-01&to=2026-11-10`,
        ]) {
          const r = await get(path, token);
          expect(r.status, path).toBe(status);
          if (status !== 200) expect(r.type).toContain('application/problem+json');
        }
      });
    }
  }

  it('a hidden KPI looks exactly like an unknown one', async () => {
    const token = await t.token('acme', 'analyst');
    const hidden = await get('/v1/kpis/compliance/series', token);
    const unknown = await get('/v1/kpis/nonexistent/series', token);
    expect(hidden.status).toBe(404);
    expect(unknown.status).toBe(404);
    const strip = (b: Buffer) => JSON.parse(String(b)).detail.replace(/"[^"]*"/, '""');
    expect(strip(hidden.bytes)).toBe(strip(unknown.bytes));
  });
});

describe('hostile parameters', () => {
  const cases: [string, string][] = [
    ["grain=week'; DROP TABLE points; --", 'querystring.grain'],
    ['grain=year', 'querystring.grain'],
    ['grain=day', 'querystring.grain'],
    ["by=region' OR 1=1 --", 'querystring.by'],
    ['by=subject', 'querystring.by'],
    ['by=color', 'querystring.by'],
    ['from=2000-01-01&to=2100-01-01', 'querystring.to'],
    ['from=2026-11-01&to=2026-10-01', 'querystring.from'],
    ['from=2026-02-30', 'querystring.from'],
    ['from=yesterday', 'querystring.from'],
    ['to=2026-13-01', 'querystring.to'],
    ["from=2026-01-01'--", 'querystring.from'],
    ['snapshot=999999', 'querystring.snapshot'],
    ['snapshot=-1', 'querystring.snapshot'],
    ['snapshot=1.5', 'querystring.snapshot'],
    ['snapshot=1;DROP', 'querystring.snapshot'],
    ['limit=10', 'querystring.limit'],
    ['subject=ACME-S-1', 'querystring.subject'],
  ];
  it.each(cases)('?%s → 400 naming %s, no SQL or stack trace', async (query, field) => {
    const r = await get(`/v1/kpis/team_satisfaction/series?${query}`, await t.token('acme', 'analyst'));
    expect(r.status).toBe(400);
    expect(r.type).toContain('application/problem+json');
    const body = JSON.parse(String(r.bytes));
    expect(body.field).toBe(field);
    expect(String(r.bytes)).not.toMatch(/SELECT|FROM points|duckdb|\n\s+at |node_modules/i);
  });

  it('an unknown KPI is a 404 and the room is still up', async () => {
    const r = await get("/v1/kpis/lead_time'--/series", await t.token('acme', 'analyst'));
    expect(r.status).toBe(404);
    expect((await get('/healthz')).status).toBe(200);
  });
});

describe('what leaves the room', () => {
  it('no response of the query layer holds a point or a pseudonym, in any encoding', async () => {
    const token = await t.token('acme', 'steering');
    const pseudo = createPseudonymiser(t.room.secret);
    const pseudonyms = subjects.map((s) => pseudo(s.startsWith('ACME') ? 'acme' : 'globex', s));
    let seen = 0;
    for (const kpi of ['customer_value', 'lead_time', 'error_rate', 'compliance', 'team_satisfaction']) {
      for (const grain of ['day', 'week', 'month']) {
        for (const accept of ['application/json', 'text/csv', 'application/vnd.apache.arrow.stream']) {
          const r = await get(`/v1/kpis/${kpi}/series?grain=${grain}&from=2026-10-01&to=2026-11-20`, token, accept);
          if (r.status !== 200) continue;
          seen++;
          const text = r.bytes.toString('latin1');
          for (const p of pseudonyms) expect(text.includes(p)).toBe(false);
          for (const s of subjects.slice(0, 10)) expect(text.includes(s)).toBe(false);
        }
      }
    }
    expect(seen).toBeGreaterThan(20);
  });

  it('JSON, CSV and Arrow carry the same cells; the headers name snapshot and digest', async () => {
    const token = await t.token('acme', 'analyst');
    const path = '/v1/kpis/team_satisfaction/series?grain=week&by=partner&from=2026-10-01&to=2026-11-10';
    const json = JSON.parse(String((await get(path, token)).bytes));
    const csv = String((await get(path, token, 'text/csv')).bytes)
      .trim()
      .split('\n');
    const arrow = tableFromIPC((await get(path, token, 'application/vnd.apache.arrow.stream')).bytes);
    expect(json.cells.length).toBeGreaterThan(4);
    expect(csv[0]).toBe('period,group,value,n,state,reason_code,reason,as_of');
    expect(csv.length - 1).toBe(json.cells.length);
    expect(arrow.numRows).toBe(json.cells.length);
    json.cells.forEach(
      (c: { period: string; group: string; value: number | null; n: number | null; state: string }, i: number) => {
        expect(csv[i + 1]!.split(',').slice(0, 5)).toEqual([
          c.period,
          c.group ?? '',
          c.value === null ? '' : String(c.value),
          c.n === null ? '' : String(c.n),
          c.state,
        ]);
        const row = arrow.get(i)!.toJSON() as Record<string, unknown>;
        expect(row['period']).toBe(c.period);
        expect(row['state']).toBe(c.state);
        expect(row['value']).toBe(c.value);
        expect(row['n']).toBe(c.n);
      },
    );
    const head = await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${token}`, accept: 'text/csv' } });
    expect(head.headers.get('x-parity-digest')).toBe(json.digest);
    expect(head.headers.get('x-parity-snapshot')).toBe(String(json.snapshot));
  });

  it('the series format follows Accept by its q-values; an Accept that admits none is a 406 and computes nothing', async () => {
    const token = await t.token('globex', 'analyst');
    const path = '/v1/kpis/lead_time/series?grain=week&from=2026-10-01&to=2026-11-10';
    const typeFor = async (accept: string | undefined) => {
      const res = await fetch(`${t.url}${path}`, {
        headers: { authorization: `Bearer ${token}`, ...(accept === undefined ? {} : { accept }) },
      });
      await res.arrayBuffer();
      return [res.status, (res.headers.get('content-type') ?? '').split(';')[0]];
    };
    const arrow = 'application/vnd.apache.arrow.stream';
    for (const [accept, status, type] of [
      [undefined, 200, 'application/json'],
      ['*/*', 200, 'application/json'],
      ['text/html,application/xhtml+xml,*/*;q=0.8', 200, 'application/json'],
      ['text/csv', 200, 'text/csv'],
      ['text/*', 200, 'text/csv'],
      [arrow, 200, arrow],
      // The higher q wins, whatever the order; q=0 refuses a type.
      [`application/json;q=0.2, ${arrow}`, 200, arrow],
      [`${arrow};q=0.1, application/json`, 200, 'application/json'],
      [`${arrow};q=0, text/csv;q=0.5`, 200, 'text/csv'],
      ['*/*, application/json;q=0', 200, 'text/csv'],
      ['application/json;q=0', 406, 'application/problem+json'],
      ['image/png', 406, 'application/problem+json'],
      // Parameters other than q do not keep a type from matching; an empty Accept admits all.
      ['application/json; charset=utf-8', 200, 'application/json'],
      ['text/csv; charset=utf-8', 200, 'text/csv'],
      ['text/csv;header=present;q=0.9, application/json;q=0.5', 200, 'text/csv'],
      ['', 200, 'application/json'],
    ] as const) {
      expect(await typeFor(accept), String(accept)).toEqual([status, type]);
    }
    const audited = async () =>
      Number(
        (
          await t.room.control.db
            .selectFrom('audit_log')
            .select((eb) => eb.fn.countAll().as('n'))
            .where('action', '=', 'query.series')
            .executeTakeFirstOrThrow()
        ).n,
      );
    const before = await audited();
    const refused = await fetch(`${t.url}${path}`, {
      headers: { authorization: `Bearer ${token}`, accept: 'image/png' },
    });
    expect(await refused.json()).toMatchObject({ status: 406, field: 'headers.accept' });
    // Refused before the series was computed: no query was run, so none was audited.
    expect(await audited()).toBe(before);
    // ?format= still chooses for download links, whatever Accept says.
    const forced = await fetch(`${t.url}${path}&format=csv`, {
      headers: { authorization: `Bearer ${token}`, accept: 'image/png' },
    });
    expect([forced.status, forced.headers.get('content-type')?.split(';')[0]]).toEqual([200, 'text/csv']);
  });

  it('every query leaves an audit entry with counts, never values', async () => {
    const token = await t.token('globex', 'analyst');
    await get('/v1/kpis/lead_time/series?grain=week&by=partner&from=2026-10-01&to=2026-11-10', token);
    const row = await t.room.control.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'query.series')
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirstOrThrow();
    expect(row.partner_id).toBe('globex');
    expect(row.target).toBe('lead_time');
    const details = (typeof row.details === 'string' ? JSON.parse(row.details) : row.details) as Record<
      string,
      unknown
    >;
    expect(details).toMatchObject({
      role: 'analyst',
      grain: 'week',
      by: 'partner',
      from: '2026-10-01',
      to: '2026-11-10',
    });
    expect(details['cells']).toBeGreaterThan(0);
    expect(Object.keys(details).sort()).toEqual([
      'by',
      'cells',
      'from',
      'grain',
      'role',
      'snapshot',
      'suppressed',
      'to',
    ]);
  });
});

describe('a warm series read many times', () => {
  it("names the snapshot it was asked at, though its withheld cells are reused while a batch of another KPI moves the room's snapshot", async () => {
    const token = await t.token('globex', 'analyst');
    const path = '/v1/kpis/team_satisfaction/series?grain=week&by=partner&from=2026-10-01&to=2026-11-10';
    const first = JSON.parse(String((await get(path, token)).bytes));
    expect(JSON.parse(String((await get(path, token)).bytes))).toEqual(first);
    // A batch of error_rate only: team_satisfaction's aggregate (and its cache entry) stay.
    const res = await fetch(`${t.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.token('acme', 'ingest')}`, 'content-type': 'application/x-ndjson' },
      body: ndjson([{ kpi: 'error_rate', at: '2026-10-20T10:00:00Z', value: 1, subject: 'ACME-S-LATE' }]),
    });
    expect(res.status).toBe(202);
    const later = await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    const second = (await later.json()) as typeof first;
    expect(second.snapshot).toBe(first.snapshot + 1);
    expect(later.headers.get('x-parity-snapshot')).toBe(String(second.snapshot));
    expect({ ...second, snapshot: first.snapshot }).toEqual(first);
    // Asked as of the earlier snapshot again, the same read names that one.
    const again = JSON.parse(String((await get(`${path}&snapshot=${first.snapshot}`, token)).bytes));
    expect(again).toEqual(first);
  });
});
