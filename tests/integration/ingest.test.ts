import { stopRollups } from '../../services/query/rollups.js';
import { createHash } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPseudonymiser } from '../../services/ingest/pseudonymiser.js';
import { rowCount, startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { arrow, csv, jsonBody, leadTimePoints, ndjson, type TestPoint } from '../helpers/points.js';

let t: TestRoom;
let acme: string;
let globex: string;

beforeAll(async () => {
  t = await startTestRoom({ env: { PARITY_MAX_BODY: '2mb' } });
  acme = await t.token('acme', 'ingest');
  globex = await t.token('globex', 'ingest');
});
afterAll(async () => t?.close());

async function post(
  body: string | Uint8Array,
  contentType: string,
  opts: { token?: string; key?: string; query?: string } = {},
) {
  const res = await fetch(`${t.url}/v1/points${opts.query ?? ''}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${opts.token ?? acme}`,
      'content-type': contentType,
      ...(opts.key ? { 'idempotency-key': opts.key } : {}),
    },
    body: body as BodyInit,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

async function landed(snapshot: number) {
  const c = await t.room.duck.connect();
  try {
    const r = await c.runAndReadAll(
      'SELECT partner, kpi, epoch_ms(ts) AS ms, value, subject, dims FROM points WHERE snapshot = $1 ORDER BY ms, subject',
      [snapshot],
    );
    return r.getRowObjectsJson();
  } finally {
    t.room.duck.release(c);
  }
}

const pointCount = () => rowCount(t, 'points');

const points = leadTimePoints(40);

describe('content types', () => {
  it('JSON, NDJSON, CSV and Arrow land the same points with the same pseudonyms, values and checksum', async () => {
    const bodies: [string, string | Uint8Array][] = [
      ['application/json', jsonBody(points)],
      ['application/x-ndjson', ndjson(points)],
      ['text/csv', csv(points)],
      ['application/vnd.apache.arrow.stream', arrow(points)],
    ];
    const receipts = [];
    for (const [type, body] of bodies) {
      const r = await post(body, type);
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      expect(r.body).toMatchObject({ accepted: 40, rejected: 0, partner: 'acme', contentType: type });
      receipts.push(r.body);
    }
    expect(new Set(receipts.map((r) => r['checksum'])).size).toBe(1);
    const sets = await Promise.all(receipts.map((r) => landed(r['snapshot'])));
    for (const s of sets) expect(s).toEqual(sets[0]);
    const pseudo = createPseudonymiser(t.room.secret);
    const expected = points.map((p) => pseudo('acme', p.subject)).sort();
    expect(sets[0]!.map((r) => r['subject']).sort()).toEqual(expected);
    expect(sets[0]!.find((r) => r['subject'] === pseudo('acme', 'ORD-000001'))).toMatchObject({
      value: 11,
      dims: '{"region":"north"}',
    });
  });

  // The store computes each point's local day in the partnership's zone when it lands (any
  // other way of computing it must give the same days); the receipt's checksum is SHA-256 over
  // the canonical lines (kpi, epoch ms, value, pseudonym, dims), whatever the spool holds.
  it("lands every point's local day as DuckDB's zone rules give it, around both transitions and local midnight, with the checksum over the canonical lines", async () => {
    const at: number[] = [];
    // The room's zone is Europe/Berlin: every 10 minutes across both of 2025's changes (01:00Z),
    // and the minutes around local midnight in winter (23:00Z) and summer (22:00Z).
    for (const day of [Date.UTC(2025, 2, 30), Date.UTC(2025, 9, 26)])
      for (let t = day - 2 * 3_600_000; t <= day + 4 * 3_600_000; t += 600_000) at.push(t);
    for (const midnight of [Date.UTC(2025, 0, 14, 23), Date.UTC(2025, 6, 14, 22)])
      for (const d of [-60_001, -1, 0, 1, 59_999]) at.push(midnight + d);
    const pts: TestPoint[] = at.map((ms, i) => ({
      kpi: 'lead_time',
      at: new Date(ms).toISOString(),
      value: 1 + (i % 7) / 4,
      subject: `DAY-${i}`,
      ...(i % 2 ? { dims: { region: 'north' } } : {}),
    }));
    const r = await post(ndjson(pts), 'application/x-ndjson');
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const c = await t.room.duck.connect();
    try {
      const rows = (
        await c.runAndReadAll(
          `SELECT count(*)::INTEGER AS n, count(*) FILTER (WHERE local_day IS DISTINCT FROM timezone('Europe/Berlin', ts)::DATE)::INTEGER AS wrong
           FROM points WHERE snapshot = $1`,
          [r.body['snapshot']],
        )
      ).getRowObjectsJson();
      expect(rows).toEqual([{ n: pts.length, wrong: 0 }]);
    } finally {
      t.room.duck.release(c);
    }
    const pseudo = createPseudonymiser(t.room.secret);
    const canonical = pts
      .map(
        (p) =>
          `lead_time\t${Date.parse(p.at)}\t${p.value}\t${pseudo('acme', p.subject)}\t${p.dims ? JSON.stringify(p.dims) : ''}\n`,
      )
      .join('');
    expect(r.body['checksum']).toBe(createHash('sha256').update(canonical).digest('hex'));
  });

  it('accepts an Arrow timestamp column with a zone', async () => {
    const { tableToIPC, Table, vectorFromArray, TimestampMillisecond, Utf8, Float64 } = await import('apache-arrow');
    const table = new Table({
      kpi: vectorFromArray(['error_rate', 'error_rate'], new Utf8()),
      at: vectorFromArray(
        [Date.parse('2026-11-02T08:00:00Z'), Date.parse('2026-11-02T09:00:00Z')],
        new TimestampMillisecond('UTC'),
      ),
      value: vectorFromArray([0, 1], new Float64()),
      subject: vectorFromArray(['DEL-1', 'DEL-2'], new Utf8()),
    });
    const r = await post(tableToIPC(table, 'stream'), 'application/vnd.apache.arrow.stream');
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const rows = await landed(r.body['snapshot']);
    expect(rows.map((x) => x['ms'])).toEqual([
      String(Date.parse('2026-11-02T08:00:00Z')),
      String(Date.parse('2026-11-02T09:00:00Z')),
    ]);
  });
});

describe('identity comes from the token', () => {
  it("lands under the token's partner and rejects a partner field in the body", async () => {
    const withPartner = points.slice(0, 3).map((p) => ({ ...p, partner: 'globex' }));
    const before = await pointCount();
    const r = await post(ndjson(withPartner as TestPoint[]), 'application/x-ndjson');
    expect(r.status).toBe(422);
    expect(r.body['errors'][0]).toMatchObject({ row: 1, field: 'partner' });
    expect(await pointCount()).toBe(before);
    const csvBody = 'kpi,at,value,subject,partner\nlead_time,2026-11-01T10:00:00Z,3,X-1,globex\n';
    const c = await post(csvBody, 'text/csv');
    expect(c.status).toBe(422);
    expect(c.body['field']).toBe('partner');
  });

  it("a partner cannot read another partner's receipt, and an ingest token cannot be used without its role", async () => {
    const mine = await post(ndjson(points.slice(0, 2)), 'application/x-ndjson', { token: globex });
    expect(mine.status).toBe(202);
    expect(mine.body['partner']).toBe('globex');
    const own = await fetch(`${t.url}/v1/batches/${mine.body['batchId']}`, {
      headers: { authorization: `Bearer ${globex}` },
    });
    expect(own.status).toBe(200);
    expect(await own.json()).toEqual(mine.body);
    const other = await fetch(`${t.url}/v1/batches/${mine.body['batchId']}`, {
      headers: { authorization: `Bearer ${acme}` },
    });
    expect(other.status).toBe(404);
    const missing = await fetch(`${t.url}/v1/batches/00000000-0000-0000-0000-000000000000`, {
      headers: { authorization: `Bearer ${acme}` },
    });
    expect(missing.status).toBe(404);
    expect(await other.text()).not.toContain(mine.body['batchId'].slice(0, 0) + 'globex');
    const analyst = await t.token('acme', 'analyst');
    const denied = await post(ndjson(points.slice(0, 1)), 'application/x-ndjson', { token: analyst });
    expect(denied.status).toBe(403);
  });

  it('401 looks the same for a missing, malformed, unknown or revoked token', async () => {
    const { revokeToken } = await import('../../services/governance/token-repository.js');
    const revokedToken = await t.token('acme', 'admin');
    const row = await t.room.control.db
      .selectFrom('tokens')
      .select('id')
      .where('name', '=', 'acme:admin')
      .executeTakeFirstOrThrow();
    await revokeToken(t.room.control.db, row.id, t.clock.now());
    const variants = [undefined, 'Bearer', 'Basic abc', 'Bearer pty_doesnotexist', `Bearer ${revokedToken}`];
    const bodies = new Set<string>();
    for (const auth of variants) {
      const res = await fetch(`${t.url}/v1/points`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', ...(auth ? { authorization: auth } : {}) },
        body: ndjson(points.slice(0, 1)),
      });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      const b = (await res.json()) as Record<string, unknown>;
      delete b['instance'];
      bodies.add(JSON.stringify(b));
    }
    expect(bodies.size).toBe(1);
  });
});

describe('idempotency', () => {
  it('a retry with the same key returns the first receipt and lands once; another body gets 409', async () => {
    const body = ndjson(leadTimePoints(5, 'IDEM'));
    const first = await post(body, 'application/x-ndjson', { key: 'retry-1' });
    expect(first.status).toBe(202);
    const before = await pointCount();
    const again = await post(body, 'application/x-ndjson', { key: 'retry-1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(await pointCount()).toBe(before);
    const other = await post(ndjson(leadTimePoints(6, 'IDEM')), 'application/x-ndjson', { key: 'retry-1' });
    expect(other.status).toBe(409);
    expect(other.body['field']).toBe('headers.idempotency-key');
    // The same key is a different key for another partner.
    const g = await post(body, 'application/x-ndjson', { key: 'retry-1', token: globex });
    expect(g.status).toBe(202);
  });

  it('the same key and bytes under another content type, or without the partial=true they landed with, get 409', async () => {
    const mixed = ndjson([
      ...leadTimePoints(3, 'IDPART'),
      { kpi: 'nope', at: '2026-11-01T00:00:00Z', value: 1, subject: 'X' },
    ]);
    const first = await post(mixed, 'application/x-ndjson', { key: 'retry-partial', query: '?partial=true' });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ accepted: 3, rejected: 1 });
    // A retry as it was sent: the first receipt (a parameter on the type changes nothing).
    const again = await post(mixed, 'application/x-ndjson; charset=utf-8', {
      key: 'retry-partial',
      query: '?partial=true',
    });
    expect(again.status).toBe(200);
    expect(again.body['batchId']).toBe(first.body['batchId']);
    // Before: 200 with the first receipt, where a fresh request would have been refused whole (422).
    const whole = await post(mixed, 'application/x-ndjson', { key: 'retry-partial' });
    expect(whole.status).toBe(409);
    expect(whole.body['field']).toBe('querystring.partial');
    // Before: 200 with a receipt saying NDJSON.
    const asJson = await post(mixed, 'application/json', { key: 'retry-partial', query: '?partial=true' });
    expect(asJson.status).toBe(409);
    expect(asJson.body['field']).toBe('headers.content-type');
  });

  it('ten concurrent identical requests land once', async () => {
    const body = ndjson(leadTimePoints(25, 'CONC'));
    const before = await pointCount();
    const results = await Promise.all(
      Array.from({ length: 10 }, () => post(body, 'application/x-ndjson', { key: 'concurrent-1' })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 202]);
    expect(new Set(results.map((r) => r.body['batchId'])).size).toBe(1);
    expect(await pointCount()).toBe(before + 25);
  });
});

describe('partial batches', () => {
  it('?partial=true lands the valid points and reports the invalid ones', async () => {
    const mixed = [...leadTimePoints(3, 'PART'), { kpi: 'nope', at: '2026-11-01T00:00:00Z', value: 1, subject: 'X' }];
    const r = await post(ndjson(mixed), 'application/x-ndjson', { query: '?partial=true' });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ accepted: 3, rejected: 1 });
    expect(r.body['errors']).toEqual([
      { row: 4, field: 'kpi', message: expect.stringContaining('not a KPI of the agreement') },
    ]);
  });
});

describe('no raw subject anywhere', () => {
  it('the DuckDB file, the control database and the logs hold pseudonyms only', async () => {
    const secretSubjects = leadTimePoints(30, 'RAWSECRET');
    const r = await post(ndjson(secretSubjects), 'application/x-ndjson', { key: 'raw-check' });
    expect(r.status).toBe(202);
    const bad = await post(
      ndjson([
        { ...secretSubjects[0]!, kpi: 'unknown_kpi' },
        { ...secretSubjects[1]!, subject: 'RAWSECRET-' + 'x'.repeat(300) },
      ]),
      'application/x-ndjson',
    );
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body)).not.toContain('RAWSECRET');

    // Everything in the control plane, table by table.
    const tables = await sql<{
      table_name: string;
    }>`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`.execute(t.room.control.db);
    let dump = '';
    for (const { table_name } of tables.rows)
      dump += JSON.stringify((await sql.raw(`SELECT * FROM "${table_name}"`).execute(t.room.control.db)).rows);
    expect(dump).toContain('ingest.landed');
    if (t.databaseUrl) {
      // With a real server, also what a backup would hold: pg_dump's output.
      const { execFileSync } = await import('node:child_process');
      dump += execFileSync('pg_dump', ['--data-only', t.databaseUrl], { encoding: 'utf8', maxBuffer: 64 << 20 });
      expect(dump).toContain('COPY public.audit_log');
    }

    const pseudo = createPseudonymiser(t.room.secret)('acme', secretSubjects[0]!.subject);
    // The rollups (and the alerts) write beside ingest: stop the rollups, and FORCE CHECKPOINT
    // waits for any write transaction still open (a plain CHECKPOINT fails on one).
    await stopRollups(t.app.reader);
    const c = await t.room.duck.connect();
    await c.run('FORCE CHECKPOINT');
    t.room.duck.release(c);
    const files = [join(t.dataDir, 'points.duckdb'), join(t.dataDir, 'points.duckdb.wal')].filter(existsSync);
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    // Control: the grep can see strings in the file, so its silence about raw ids means something.
    expect(bytes.includes(Buffer.from(pseudo))).toBe(true);
    const logs = t.logs.join('');
    expect(logs).toContain('batch landed');
    for (const s of ['RAWSECRET', ...Object.values(t.tokens), t.room.secret.toString('utf8')]) {
      expect(bytes.includes(Buffer.from(s)), `DuckDB bytes contain ${s.slice(0, 12)}`).toBe(false);
      expect(dump.includes(s), `control plane contains ${s.slice(0, 12)}`).toBe(false);
      expect(logs.includes(s), `logs contain ${s.slice(0, 12)}`).toBe(false);
    }
  });
});
