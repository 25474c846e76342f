import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leadTimePoints, ndjson } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { createToken, revokeToken } from '../../services/governance/token-repository.js';
import type { TestClock } from '../../services/platform/clock.js';

let t: TestRoom;
beforeAll(async () => {
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off' } });
  const res = await fetch(`${t.url}/v1/points`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token('acme', 'ingest')}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(leadTimePoints(60)),
  });
  expect(res.status).toBe(202);
});
afterAll(async () => t.close());

const signIn = (body: unknown) =>
  fetch(`${t.url}/v1/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe('dashboard sessions', () => {
  it('a user token sets an httpOnly, SameSite=Strict cookie that authenticates like the bearer token', async () => {
    const res = await signIn({ token: await t.token('acme', 'analyst') });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ role: 'analyst', partner: 'acme', partnerName: 'Acme Logistics' });
    const cookie = res.headers.get('set-cookie')!;
    // A session id of its own, never the token.
    expect(cookie).toMatch(/^parity_session=pts_/);
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Strict/i);
    const jar = cookie.split(';')[0]!;
    const kpis = await fetch(`${t.url}/v1/kpis`, { headers: { cookie: jar } });
    expect(kpis.status).toBe(200);
    const csv = await fetch(`${t.url}/v1/kpis/lead_time/series?grain=week&format=csv`, { headers: { cookie: jar } });
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const arrow = await fetch(`${t.url}/v1/kpis/lead_time/series?grain=week&format=arrow`, {
      headers: { cookie: jar },
    });
    expect(arrow.headers.get('content-type')).toBe('application/vnd.apache.arrow.stream');
    expect((await fetch(`${t.url}/v1/kpis/lead_time/series?format=xml`, { headers: { cookie: jar } })).status).toBe(
      400,
    );
    // A state-changing request carried by the cookie from another origin is refused.
    const foreign = await fetch(`${t.url}/v1/incidents/inc_abc/ack`, {
      method: 'POST',
      headers: { cookie: jar, origin: 'https://evil.example', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(foreign.status).toBe(401);
    const sameOrigin = await fetch(`${t.url}/v1/incidents/inc_abc/ack`, {
      method: 'POST',
      headers: { cookie: jar, origin: t.url, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(sameOrigin.status).toBe(404); // authenticated; the incident does not exist
    // Without an Origin header only the browser's Sec-Fetch-Site can show the request is the room's own.
    for (const [headers, status] of [
      [{}, 401],
      [{ 'sec-fetch-site': 'cross-site' }, 401],
      [{ 'sec-fetch-site': 'same-site' }, 401],
      [{ 'sec-fetch-site': 'same-origin' }, 404],
    ] as const) {
      const r = await fetch(`${t.url}/v1/incidents/inc_abc/ack`, {
        method: 'POST',
        headers: { cookie: jar, 'content-type': 'application/json', ...headers },
        body: '{}',
      });
      expect(r.status, JSON.stringify(headers)).toBe(status);
    }
    // Sign-out, like every change made on the cookie, only from the room's own page: another
    // origin's (or one without proof) neither ends the session nor clears the cookie.
    for (const headers of [{}, { origin: 'http://evil.example' }, { 'sec-fetch-site': 'cross-site' }] as Record<
      string,
      string
    >[]) {
      const r = await fetch(`${t.url}/v1/session`, { method: 'DELETE', headers: { cookie: jar, ...headers } });
      expect(r.status, JSON.stringify(headers)).toBe(403);
      expect(r.headers.get('content-type')).toMatch(/problem\+json/);
      expect(r.headers.get('set-cookie')).toBeNull();
    }
    expect((await fetch(`${t.url}/v1/session`, { headers: { cookie: jar } })).status).toBe(200);
    // Sign-out clears the cookie.
    const out = await fetch(`${t.url}/v1/session`, { method: 'DELETE', headers: { cookie: jar, origin: t.url } });
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(/parity_session=;.*Expires=Thu, 01 Jan 1970/i);
  });

  it('a session ends at sign-out, when its token is revoked, after its idle limit and at its absolute end', async () => {
    const clock = t.clock as TestClock;
    const start = clock.now();
    const session = async (token?: string) => {
      const res = await signIn({ token: token ?? (await t.token('acme', 'analyst')) });
      expect(res.status).toBe(200);
      const jar = res.headers.get('set-cookie')!.split(';')[0]!;
      expect(jar).not.toContain(token ?? (await t.token('acme', 'analyst')));
      return jar;
    };
    const status = async (jar: string) => (await fetch(`${t.url}/v1/session`, { headers: { cookie: jar } })).status;
    try {
      // Sign-out: the same cookie, replayed, no longer works.
      const a = await session();
      expect(await status(a)).toBe(200);
      expect(
        (
          await fetch(`${t.url}/v1/session`, {
            method: 'DELETE',
            headers: { cookie: a, 'sec-fetch-site': 'same-origin' },
          })
        ).status,
      ).toBe(204);
      expect(await status(a)).toBe(401);
      // Revocation of the token ends the sessions signed in with it.
      const issued = await createToken(t.room.control.db, { partnerId: 'acme', role: 'analyst', name: 'temp' }, start);
      const b = await session(issued.token);
      expect(await status(b)).toBe(200);
      await revokeToken(t.room.control.db, issued.id, clock.now());
      expect(await status(b)).toBe(401);
      // Idle: 2 h without use (PARITY_SESSION_IDLE_MINUTES); use moves the clock on.
      const c = await session();
      clock.advance(100 * 60_000);
      expect(await status(c)).toBe(200);
      clock.advance(100 * 60_000);
      expect(await status(c)).toBe(200); // used 100 min ago, not 200
      clock.advance(121 * 60_000);
      expect(await status(c)).toBe(401);
      // Absolute: 12 h after sign-in, however busy.
      const d = await session();
      for (let h = 0; h < 11; h++) {
        clock.advance(60 * 60_000);
        expect(await status(d), `hour ${h + 1}`).toBe(200);
      }
      clock.advance(61 * 60_000);
      expect(await status(d)).toBe(401);
      // What is stored is a hash: no session id, no token in the table; dead sessions are gone.
      const e = await session();
      const rows = await t.room.control.db.selectFrom('sessions').selectAll().execute();
      expect(rows).toHaveLength(1);
      for (const r of rows) expect(r.id_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.stringify(rows)).not.toContain(e.split('=')[1]!);
    } finally {
      clock.set(start);
    }
  });

  it('refuses ingest tokens, unknown tokens and malformed bodies with a precise problem', async () => {
    const ingest = await signIn({ token: await t.token('acme', 'ingest') });
    expect(ingest.status).toBe(403);
    const unknown = await signIn({ token: 'pty_nope' });
    expect(unknown.status).toBe(401);
    expect((await unknown.json()).field).toBe('body.token');
    for (const body of [{}, { token: '' }, { token: 'x'.repeat(600) }, { token: 'a', extra: 1 }]) {
      const r = await signIn(body);
      expect(r.status, JSON.stringify(body).slice(0, 60)).toBe(400);
      expect(r.headers.get('content-type')).toMatch(/problem\+json/);
    }
    const revokedCheck = await fetch(`${t.url}/v1/session`, { headers: { cookie: 'parity_session=pty_unknown' } });
    expect(revokedCheck.status).toBe(401);
  });

  it('serves the built dashboard at / with no request to another host in it', async () => {
    const res = await fetch(`${t.url}/`);
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('<parity-app>');
    expect(html).not.toMatch(/https?:\/\/(?!localhost)/);
  });
});

describe('behind a proxy (PARITY_TRUST_PROXY)', () => {
  it('takes the client address the trusted proxy forwards, and only from it', async () => {
    const refusedFrom = async (room: TestRoom, headers: Record<string, string>) => {
      const r = await fetch(`${room.url}/v1/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ token: 'not-a-token' }),
      });
      expect(r.status).toBe(401);
      const last = await room.room.control.db
        .selectFrom('audit_log')
        .select('details')
        .where('action', '=', 'session.refused')
        .orderBy('seq', 'desc')
        .executeTakeFirstOrThrow();
      return (last.details as { ip: string }).ip;
    };
    const proxied = await startTestRoom({ env: { PARITY_TRUST_PROXY: '127.0.0.1, ::1' } });
    try {
      // The proxy (this test, on loopback) names the client: sign-in flows count per person, not per proxy.
      expect(await refusedFrom(proxied, { 'x-forwarded-for': '203.0.113.7' })).toBe('203.0.113.7');
    } finally {
      await proxied.close();
    }
    // Without the setting a client cannot name another address.
    expect(await refusedFrom(t, { 'x-forwarded-for': '203.0.113.7' })).toMatch(
      /^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)$/,
    );
  });
});
