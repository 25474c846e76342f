// People sign in the way their company does (issue #16), in Chromium against two real OpenID
// providers (the oidc-provider package, one per partner, on local ports): the authorization-code
// flow with PKCE from the sign-in page's button; group → role mapping; a partner's people come
// only from its own issuer and domains; refusals say why and open no session; invitation links
// work once and expire. Every sign-in ends in the same dashboard session (a cookie, no token in any
// address).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import type { TestClock } from '../../services/platform/clock.js';
import { launchChromium } from '../helpers/browser.js';
import { TestIdp } from '../helpers/idp.js';
import { freePort } from '../helpers/spawn-room.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

const agreement = `
partnership: { id: sso-test, title: Sign-in test, timezone: Europe/Berlin }
partners:
  - { id: pa, name: Partner A }
  - { id: pb, name: Partner B }
twoPartyConsent: true
steering:
  - { name: Cleo Chair, email: cleo@pa.example }
kpis:
  - id: delay
    title: Delay
    unit: hours
    subject: order
    measure: avg
    grains: [week]
    disclosure: partnership
    breakdown: per_partner
    band: { upper: 100 }
    evaluate: { grain: week }
    freshness: { every: P7D, grace: P1D }
    owners: { pa: { name: Olga, email: olga@pa.example } }
    escalation: { ackWithin: P2D }
`;

let t: TestRoom;
let browser: Browser;
let idpA: TestIdp;
let idpB: TestIdp;
let dir: string;
let adminToken: string;
/** The people of partner A's provider: a test changes one's groups, as their company would. */
const accountsA: Record<string, { email: string; email_verified?: boolean; groups?: string[] }> = {
  ada: { email: 'ada@pa.example', groups: ['parity-admins', 'parity-analysts'] },
  ann: { email: 'Ann@PA.example', groups: ['parity-analysts'] },
  cleo: { email: 'cleo@pa.example', groups: ['parity-steering'] },
  mallory: { email: 'mallory@pa.example', groups: ['parity-steering'] },
  nog: { email: 'nog@pa.example', groups: ['unrelated'] },
  eve: { email: 'eve@elsewhere.example', groups: ['parity-admins'] },
  bob: { email: 'bob@pb.example', groups: ['parity-admins'] },
  unv: { email: 'unv@pa.example', email_verified: false, groups: ['parity-analysts'] },
  // The Kelvin sign lower-cases to k: the room would have signed in kim@pa.example, another person.
  kelvin: { email: '\u212Aim@pa.example', groups: ['parity-analysts'] },
  twoat: { email: 'bob@pb.example@pa.example', groups: ['parity-analysts'] },
  // A provider's groups claim holding no strings: no group, not a failure of the room.
  objgrp: { email: 'obj@pa.example', groups: [{ toString: 1 }] as unknown as string[] },
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'parity-sso-'));
  const [portA, portB] = [await freePort(), await freePort()];
  writeFileSync(join(dir, 'agreement.yaml'), agreement);
  // The providers' secrets come from the environment, as a real deployment keeps them.
  process.env['TEST_IDP_A_SECRET'] = 'a-secret-of-partner-a-for-the-room';
  writeFileSync(
    join(dir, 'oidc.yaml'),
    `
providers:
  - partner: pa
    label: Partner A Login
    issuer: http://127.0.0.1:${portA}
    clientId: parity-room
    clientSecretEnv: TEST_IDP_A_SECRET
    domains: [pa.example]
    scopes: [openid, email, groups]
    roles: { parity-admins: admin, parity-analysts: analyst, parity-steering: steering }
  - partner: pb
    issuer: http://127.0.0.1:${portB}
    clientId: parity-room
    clientSecret: b-secret-of-partner-b-for-the-room
    domains: [pb.example]
    defaultRole: analyst
`,
  );
  t = await startTestRoom({
    agreementFile: join(dir, 'agreement.yaml'),
    env: { PARITY_OIDC_FILE: join(dir, 'oidc.yaml') },
  });
  const callback = (p: string) => `${t.url}/v1/auth/oidc/${p}/callback`;
  idpA = await TestIdp.start({
    port: portA,
    // A's client also lists pb's address: a provider that would answer a flow not its own (the
    // mix-up test), which the room must refuse by itself.
    redirectUris: [callback('pa'), callback('pb')],
    clientId: 'parity-room',
    clientSecret: 'a-secret-of-partner-a-for-the-room',
    accounts: accountsA,
  });
  idpB = await TestIdp.start({
    port: portB,
    redirectUris: [callback('pb')],
    clientId: 'parity-room',
    clientSecret: 'b-secret-of-partner-b-for-the-room',
    accounts: { bea: { email: 'bea@pb.example' } },
  });
  adminToken = (
    await createToken(t.room.control.db, { partnerId: 'pa', role: 'admin', name: 'admin@pa.example' }, t.clock.now())
  ).token;
  browser = await launchChromium();
}, timeout(120_000));

afterAll(async () => {
  await browser?.close();
  await idpA?.close();
  await idpB?.close();
  await t?.close();
  delete process.env['TEST_IDP_A_SECRET'];
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const app = (page: Page, selector: string) =>
  page.$eval('parity-app', (a, sel) => a.shadowRoot!.querySelector(sel)?.textContent?.trim() ?? null, selector);

/** Who the browser context's session belongs to (status 401 when none). */
async function session(context: BrowserContext): Promise<{ status: number; body: any }> {
  const r = await context.request.get(`${t.url}/v1/session`);
  return { status: r.status(), body: r.status() === 200 ? await r.json() : null };
}

/**
 * From the room's sign-in page: the button of a partner's provider, its login form (login name),
 * its consent page; back at the room, the page as it lands (signed in, or the refusal shown).
 */
async function signInThrough(button: string, login: string, route?: (c: BrowserContext) => Promise<void>) {
  const context = await browser.newContext({ locale: 'en-GB' });
  await route?.(context);
  const page = await context.newPage();
  // Every address the browser asked for on the way (the room's, the provider's, the way back).
  const urls: string[] = [];
  context.on('request', (r) => urls.push(r.url()));
  await page.goto(`${t.url}/`);
  await page.click(`parity-app >> [data-testid="providers"] >> text=${button}`);
  await page.waitForSelector('input[name="login"]');
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any');
  await page.click('button[type="submit"]');
  await page.waitForURL(`${t.url}/**`);
  await page.waitForFunction(
    () => {
      const root = document.querySelector('parity-app')?.shadowRoot;
      return !!root?.querySelector('[data-testid="who"], [role="alert"]');
    },
    undefined,
    { timeout: timeout(20_000) },
  );
  return { context, page, urls };
}

describe('sign-in through the partner’s identity provider (OIDC, code flow with PKCE)', () => {
  it('signs a person in with the role their groups map to; the strongest group wins; no token in any address', async () => {
    const { context, page, urls } = await signInThrough('Partner A Login', 'ada');
    expect(await app(page, '[data-testid="who"]')).toBe('Signed in as ada@pa.example (admin) for Partner A');
    expect((await session(context)).body).toEqual({
      name: 'ada@pa.example',
      role: 'admin',
      partner: 'pa',
      partnerName: 'Partner A',
    });
    expect(page.url()).toBe(`${t.url}/#/`);
    expect(urls.length).toBeGreaterThan(3);
    expect(urls.some((u) => u.includes('/v1/auth/oidc/pa/callback?code='))).toBe(true);
    expect(urls.join(' ')).not.toMatch(/pty_|inv_/);
    // The sign-in token behind the session: listed for the partner's admin, origin oidc, used now.
    const tokens = (await (
      await fetch(`${t.url}/v1/tokens`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json()) as { tokens: { id: string; name: string; origin: string; lastUsedAt: string | null; role: string }[] };
    const ada = tokens.tokens.find((x) => x.name === 'ada@pa.example')!;
    expect(ada).toMatchObject({ origin: 'oidc', role: 'admin' });
    expect(ada.lastUsedAt).not.toBeNull();
    // A sign-in has no secret to renew: rotating it is refused (revoking it ends the person's session).
    const rotate = await fetch(`${t.url}/v1/tokens/${ada.id}/rotate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(rotate.status).toBe(409);
    await context.close();

    for (const [button, login, expected] of [
      ['Partner A Login', 'ann', { name: 'ann@pa.example', role: 'analyst', partner: 'pa' }],
      ['Partner A Login', 'cleo', { name: 'cleo@pa.example', role: 'steering', partner: 'pa' }],
      ['Partner B', 'bea', { name: 'bea@pb.example', role: 'analyst', partner: 'pb' }],
    ] as const) {
      const s = await signInThrough(button, login);
      expect((await session(s.context)).body, login).toMatchObject(expected);
      await s.context.close();
    }
  });

  it('refuses, saying why, and opens no session: another partner’s domain, an unknown domain, no mapped group, steering not named, an unverified e-mail', async () => {
    for (const [login, words] of [
      ['bob', "not one of your partner's domains"],
      ['eve', "not one of your partner's domains"],
      ['nog', 'none of the groups'],
      ['mallory', 'none of the groups'],
      ['unv', 'no verified e-mail'],
      ['kelvin', 'no verified e-mail'],
      ['twoat', 'no verified e-mail'],
      ['objgrp', 'none of the groups'],
    ] as const) {
      const { context, page } = await signInThrough('Partner A Login', login);
      expect(await app(page, '[role="alert"]'), login).toContain(words);
      expect((await session(context)).status, login).toBe(401);
      await context.close();
    }
    const audit = (await (
      await fetch(`${t.url}/v1/audit?action=session.refused&limit=100`, {
        headers: { authorization: `Bearer ${adminToken}` },
      })
    ).json()) as { entries: { details: { via: string; reason: string } }[] };
    expect(audit.entries.filter((e) => e.details.via === 'oidc').map((e) => e.details.reason)).toEqual(
      expect.arrayContaining(['domain', 'role', 'email']),
    );
  });

  it("a user of partner A's issuer cannot become partner B's: a flow started for B and answered by A is refused", async () => {
    // The browser is sent to A when the room sends it to B (a mix-up): A knows the room's client
    // and signs bob in, but the room exchanges the code at B, which never issued it.
    const { context, page } = await signInThrough('Partner B', 'bob', async (c) => {
      // (A redirect the browser follows is not routed: the room's own answer is rewritten.)
      await c.route(`${t.url}/v1/auth/oidc/pb/login`, async (r) => {
        const res = await r.fetch({ maxRedirects: 0 });
        const to = new URL(res.headers()['location']!);
        expect(to.origin).toBe(idpB.issuer);
        await r.fulfill({
          response: res,
          headers: { ...res.headers(), location: `${idpA.issuer}${to.pathname}${to.search}` },
        });
      });
    });
    expect(await app(page, '[role="alert"]')).toContain('did not confirm the sign-in');
    expect((await session(context)).status).toBe(401);
    await context.close();
    // A callback the room did not start (no flow cookie) is refused too.
    const res = await fetch(`${t.url}/v1/auth/oidc/pa/callback?code=x&state=y`, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/#signin-error=flow');
    // A flow started for pa that comes back to pb's address is refused before any exchange.
    const start = await fetch(`${t.url}/v1/auth/oidc/pa/login`, { redirect: 'manual' });
    const cookie = start.headers.get('set-cookie')!.split(';')[0]!;
    const crossed = await fetch(`${t.url}/v1/auth/oidc/pb/callback?code=x&state=y`, {
      redirect: 'manual',
      headers: { cookie },
    });
    expect(crossed.headers.get('location')).toBe('/#signin-error=provider');
    expect((await fetch(`${t.url}/v1/auth/oidc/nobody/login`, { redirect: 'manual' })).status).toBe(404);
    // An address that is no partner's is not quoted into the partner's audit log.
    const start2 = await fetch(`${t.url}/v1/auth/oidc/pa/login`, { redirect: 'manual' });
    await fetch(`${t.url}/v1/auth/oidc/admin%20ada%20approved/callback?code=x&state=y`, {
      redirect: 'manual',
      headers: { cookie: start2.headers.get('set-cookie')!.split(';')[0]! },
    });
    const refused = await (
      await fetch(`${t.url}/v1/audit?action=session.refused&limit=100`, {
        headers: { authorization: `Bearer ${adminToken}` },
      })
    ).text();
    expect(refused).toContain('came back to an unknown address');
    expect(refused).not.toContain('approved');
    // Without PARITY_PUBLIC_URL the room's address comes from Host: one that is no host name is a
    // 400 naming it, at the callback and at the login.
    for (const path of ['/v1/auth/oidc/pa/callback?code=a', '/v1/auth/oidc/pa/login'])
      for (const host of ['a b', 'evil:99999', '[::1']) {
        const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const u = new URL(t.url);
          const r = request({ host: u.hostname, port: u.port, path, headers: { host } }, (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve({ status: res.statusCode!, body: b }));
          });
          r.on('error', reject);
          r.end();
        });
        expect(status, `${path} ${host}`).toBe(400);
        expect(JSON.parse(body).field, `${path} ${host}`).toBe('headers.host');
      }
  });

  it('a changed group changes the role at the next sign-in, and the old sign-in ends', async () => {
    const first = await signInThrough('Partner A Login', 'ann');
    expect((await session(first.context)).body.role).toBe('analyst');
    // ann is made an admin at her company's provider.
    accountsA['ann']!.groups = ['parity-admins'];
    const again = await signInThrough('Partner A Login', 'ann');
    expect((await session(again.context)).body).toMatchObject({ name: 'ann@pa.example', role: 'admin' });
    // The analyst sign-in was replaced: its session is over.
    expect((await session(first.context)).status).toBe(401);
    // Out of every group: refused, and the admin sign-in she had ends at once.
    accountsA['ann']!.groups = ['unrelated'];
    const out = await signInThrough('Partner A Login', 'ann');
    expect((await session(out.context)).status).toBe(401);
    expect((await session(again.context)).status).toBe(401);
    await out.context.close();
    await again.context.close();
    await first.context.close();
  });
});

describe('refused sign-ins in the audit log', () => {
  it('anyone can make the room refuse a sign-in: a partner’s log takes 30 a minute, and counts the rest into the next', async () => {
    const clock = t.clock as TestClock;
    clock.advance(61_000); // a minute of its own
    const refuseOnce = async () => {
      const start = await fetch(`${t.url}/v1/auth/oidc/pa/login`, { redirect: 'manual' });
      const cookie = start.headers.get('set-cookie')!.split(';')[0]!;
      const back = await fetch(`${t.url}/v1/auth/oidc/pb/callback?code=x&state=y`, {
        redirect: 'manual',
        headers: { cookie },
      });
      expect(back.headers.get('location')).toBe('/#signin-error=provider');
    };
    const entries = async () =>
      (
        (await (
          await fetch(`${t.url}/v1/audit?action=session.refused&limit=1000`, {
            headers: { authorization: `Bearer ${adminToken}` },
          })
        ).json()) as { entries: { details: { unauditedBefore?: number } }[] }
      ).entries;
    const before = (await entries()).length;
    for (let i = 0; i < 33; i++) await refuseOnce();
    expect((await entries()).length - before).toBe(30);
    clock.advance(61_000);
    await refuseOnce();
    const after = await entries();
    expect(after.length - before).toBe(31);
    expect(after.some((e) => e.details.unauditedBefore === 3)).toBe(true);
  });
});

describe('invitations', () => {
  const invite = async (body: unknown, token = adminToken) =>
    fetch(`${t.url}/v1/invitations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('a link signs its person in once, in the browser; a second use says it was used', async () => {
    const r = await invite({ email: 'ivy@pa.example', role: 'analyst' });
    expect(r.status).toBe(201);
    const inv = (await r.json()) as { link: string; state: string; expiresAt: string };
    expect(inv.state).toBe('pending');
    expect(inv.link).toMatch(new RegExp(`^${t.url}/#invite=inv_[A-Za-z0-9_-]{43}$`));
    const context = await browser.newContext({ locale: 'en-GB' });
    const page = await context.newPage();
    await page.goto(inv.link);
    await page.waitForFunction(
      () => !!document.querySelector('parity-app')?.shadowRoot?.querySelector('[data-testid="who"]'),
    );
    expect(await app(page, '[data-testid="who"]')).toBe('Signed in as ivy@pa.example (analyst) for Partner A');
    // The code left the address at once.
    expect(page.url()).not.toContain('inv_');
    await context.close();
    const other = await browser.newContext({ locale: 'en-GB' });
    const p2 = await other.newPage();
    await p2.goto(inv.link);
    await p2.waitForFunction(() => !!document.querySelector('parity-app')?.shadowRoot?.querySelector('[role="alert"]'));
    expect(await app(p2, '[role="alert"]')).toContain('used already');
    expect((await session(other)).status).toBe(401);
    await other.close();
    const listed = (await (
      await fetch(`${t.url}/v1/invitations`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json()) as { invitations: { email: string; state: string }[] };
    expect(listed.invitations.find((i) => i.email === 'ivy@pa.example')!.state).toBe('used');
  });

  it('expires, can be withdrawn, and refuses bad bodies naming the field', async () => {
    const accept = async (code: string) =>
      fetch(`${t.url}/v1/session/invitation`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code }),
      });
    const code = async (body: unknown) =>
      /#invite=(inv_[\w-]+)$/.exec(((await (await invite(body)).json()) as { link: string }).link)![1]!;
    const soon = await code({ email: 'short@pa.example', role: 'analyst', expiresInHours: 1 });
    (t.clock as TestClock).advance(2 * 3_600_000);
    try {
      const late = await accept(soon);
      expect(late.status).toBe(410);
      expect(((await late.json()) as { detail: string }).detail).toContain('expired');
    } finally {
      (t.clock as TestClock).advance(-2 * 3_600_000);
    }
    const withdrawn = await invite({ email: 'gone@pa.example', role: 'owner' });
    const w = (await withdrawn.json()) as { id: string; link: string };
    const del = await fetch(`${t.url}/v1/invitations/${w.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(((await del.json()) as { state: string }).state).toBe('revoked');
    expect((await accept(/#invite=(inv_[\w-]+)$/.exec(w.link)![1]!)).status).toBe(410);

    for (const [body, field] of [
      [{ email: 'not-an-email', role: 'analyst' }, 'body.email'],
      [{ email: 'x@pa.example', role: 'operator' }, 'body.role'],
      [{ email: 'x@pa.example', role: 'steering' }, 'body.role'],
      [{ email: 'x@pa.example', role: 'analyst', expiresInHours: 500 }, 'body.expiresInHours'],
      [{ email: 'x@pa.example', role: 'analyst', token: 'x' }, 'body.token'],
      // pa signs in through its provider: its people have its domain.
      [{ email: 'x@elsewhere.example', role: 'analyst' }, 'body.email'],
    ] as const) {
      const r = await invite(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(((await r.json()) as { field: string }).field).toBe(field);
    }
    const analyst = (
      await createToken(t.room.control.db, { partnerId: 'pa', role: 'analyst', name: 'an@pa.example' }, t.clock.now())
    ).token;
    expect((await invite({ email: 'x@pa.example', role: 'analyst' }, analyst)).status).toBe(403);
    // A name that reads more than its role is the host's to hand out: the committee's member, a
    // KPI's owner as a mere analyst. pa's own owner, as owner, is pa's admin's to invite.
    for (const body of [
      { email: 'cleo@pa.example', role: 'analyst' },
      { email: 'olga@pa.example', role: 'analyst' },
    ]) {
      const r = await invite(body);
      expect(r.status, JSON.stringify(body)).toBe(403);
      expect(((await r.json()) as { field: string }).field).toBe('body.email');
    }
    expect((await invite({ email: 'olga@pa.example', role: 'owner' })).status).toBe(201);
    const malformed = await accept('pty_not-an-invitation');
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { field: string }).field).toBe('body.code');
    expect((await accept(`inv_${'A'.repeat(43)}`)).status).toBe(401);
  });
});
