import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../services/governance/audit-repository.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { leadTimePoints, ndjson } from '../helpers/points.js';

let t: TestRoom;
beforeAll(async () => {
  t = await startTestRoom();
});
afterAll(async () => t?.close());

describe('health and docs', () => {
  it('/healthz, /readyz (PostgreSQL and DuckDB) and /metrics answer', async () => {
    expect(await (await fetch(`${t.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${t.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { postgres: 'ok', duckdb: 'ok' } });
    const metrics = await t.metrics();
    expect(metrics).toMatch(/^parity_snapshot \d+$/m);
    expect(metrics).toMatch(/^parity_alert_evaluations_total \d+$/m);
    expect(metrics).toMatch(/^parity_alert_evaluation_busy [01]$/m);
    expect(metrics).toMatch(/^parity_notifications_pending 0$/m);
  });

  it("/metrics is the operator's: no partner's token reads the room's own work (docs/privacy.md §4)", async () => {
    // The room's work follows figures a partner may not read (an evaluation's reads per scope in
    // breach of a need-to-know KPI, its cached cells): a red team read a hidden KPI's breaches
    // from the aggregate cache's counters, and moved them with its own points.
    const anonymous = await fetch(`${t.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    for (const role of ['ingest', 'analyst', 'owner', 'admin', 'steering'] as const) {
      const res = await fetch(`${t.url}/metrics`, {
        headers: { authorization: `Bearer ${await t.token('acme', role)}` },
      });
      expect(res.status, role).toBe(403);
      const body = await res.json();
      expect(body.detail, role).toMatch(/needs operator/);
      expect(JSON.stringify(body)).not.toMatch(/parity_/);
    }
    const operator = await fetch(`${t.url}/metrics`, {
      headers: { authorization: `Bearer ${await t.token(null, 'operator')}` },
    });
    expect(operator.status).toBe(200);
    expect(await operator.text()).toMatch(/^parity_aggregate_cache_hits_total \d+$/m);
    // Liveness and readiness stay open to a load balancer.
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
  });

  it('/openapi.json is generated from the zod schemas and /docs serves it without a CDN', async () => {
    const doc = await (await fetch(`${t.url}/openapi.json`)).json();
    expect(doc.openapi).toMatch(/^3\./);
    const post = doc.paths['/v1/points'].post;
    expect(Object.keys(post.responses)).toEqual(expect.arrayContaining(['202', '200', '413', '415', '422', '429']));
    expect(post.responses['202'].content['application/json'].schema.properties).toHaveProperty('checksum');
    expect(doc.paths['/v1/batches/{id}'].get).toBeDefined();
    const docs = await fetch(`${t.url}/docs/`);
    expect(docs.status).toBe(200);
    const html = await docs.text();
    expect(html).not.toMatch(/https?:\/\/(?!localhost|127\.0\.0\.1)[^"']*\.(js|css)/);
  });

  it('every response carries a request id, also in the log', async () => {
    const r = await fetch(`${t.url}/healthz`, { headers: { 'x-request-id': 'trace-me-42' } });
    expect(r.headers.get('x-request-id')).toBe('trace-me-42');
    expect(t.logs.some((l) => l.includes('"reqId":"trace-me-42"'))).toBe(true);
  });

  it('unknown routes get a problem+json 404', async () => {
    const r = await fetch(`${t.url}/v1/nothing`);
    expect(r.status).toBe(404);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
  });
});

describe('audit log', () => {
  it('ingest and reads leave hash-chained entries; the chain verifies; rows cannot be updated', async () => {
    const token = await t.token('acme', 'ingest');
    const before = await verifyAuditChain(t.room.control.db);
    const res = await fetch(`${t.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(leadTimePoints(3, 'AUD')),
    });
    const receipt = await res.json();
    await fetch(`${t.url}/v1/batches/${receipt.batchId}`, { headers: { authorization: `Bearer ${token}` } });
    await fetch(`${t.url}/v1/points`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
      body: '{"kpi":"nope"}\n',
    });
    const rows = await t.room.control.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
    const actions = rows.map((r) => r.action);
    expect(actions).toEqual(
      expect.arrayContaining(['agreement.installed', 'ingest.landed', 'batch.receipt.read', 'ingest.refused']),
    );
    const landed = rows.find((r) => r.action === 'ingest.landed' && r.target === receipt.batchId)!;
    expect(landed.partner_id).toBe('acme');
    expect(JSON.stringify(landed.details)).not.toMatch(/AUD-/);
    const after = await verifyAuditChain(t.room.control.db);
    expect(after.ok).toBe(true);
    expect(after.entries).toBeGreaterThan(before.entries);
    await expect(sql`UPDATE audit_log SET actor = 'mallory' WHERE seq = 1`.execute(t.room.control.db)).rejects.toThrow(
      /append-only/,
    );
  });

  it('a tampered row breaks the chain at that row', async () => {
    await sql`ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update`.execute(t.room.control.db);
    await sql`UPDATE audit_log SET details = '{"accepted": 999}'::jsonb WHERE seq = 2`.execute(t.room.control.db);
    await sql`ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update`.execute(t.room.control.db);
    const r = await verifyAuditChain(t.room.control.db);
    expect(r).toMatchObject({ ok: false, brokenAt: 2 });
  });
});
