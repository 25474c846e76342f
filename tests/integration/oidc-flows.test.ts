// The sign-in flows the room keeps while people are at their identity provider: anyone can start
// one, so the table is bounded per host and per IPv6 site (services/governance/oidc.ts). A holder
// of one IPv6 /64 picks any of 2^64 addresses: counted per address, it filled the table alone.
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OidcSignIn, SignInError, type OidcProvider } from '../../services/governance/oidc.js';
import { addressBlocks } from '../../services/platform/addresses.js';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import { TestIdp } from '../helpers/idp.js';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

let idp: TestIdp;
let oidc: OidcSignIn;
const loaded = loadAgreementFile('fixtures/demo-agreement.yaml');
if (!loaded.ok) throw new Error('demo agreement invalid');
const agreement = loaded.agreement;
const redirect = 'http://127.0.0.1:1/v1/auth/oidc/acme/callback';

beforeAll(async () => {
  idp = await TestIdp.start({
    port: await freePort(),
    redirectUris: [redirect],
    clientId: 'room',
    clientSecret: 'room-secret',
    accounts: {},
  });
  const provider: OidcProvider = {
    partner: 'acme',
    issuer: idp.issuer,
    clientId: 'room',
    secret: 'room-secret',
    domains: ['acme.example'],
    groupsClaim: 'groups',
    scopes: ['openid', 'email'],
    roles: {},
  };
  oidc = new OidcSignIn(new Map([['acme', provider]]));
});
afterAll(async () => idp?.close());

/** Whether the room still holds a flow: its callback fails later than the flow check, at the provider. */
async function held(flowId: string, now: number): Promise<boolean> {
  try {
    await oidc.finish(flowId, 'acme', new URL(`${redirect}?code=x&state=y`), agreement, now);
    return true;
  } catch (e) {
    expect(e).toBeInstanceOf(SignInError);
    return (e as SignInError).reason !== 'flow';
  }
}

describe('address blocks', () => {
  it('an IPv4 address is its own host and site; an IPv6 one counts in its /64 and /48, however written', () => {
    expect(addressBlocks('203.0.113.7')).toEqual({ host: '203.0.113.7', site: '203.0.113.7' });
    expect(addressBlocks('::ffff:203.0.113.7')).toEqual({ host: '203.0.113.7', site: '203.0.113.7' });
    const a = addressBlocks('2001:db8:aa:bb:1::1');
    expect(a).toEqual({ host: '2001:db8:aa:bb::/64', site: '2001:db8:aa::/48' });
    expect(addressBlocks('2001:0db8:00aa:00bb:ffff:ffff:ffff:ffff')).toEqual(a);
    expect(addressBlocks('2001:db8:aa:bb::9%eth0')).toEqual(a);
    expect(addressBlocks('2001:db8:aa:cc::1')).toEqual({ host: '2001:db8:aa:cc::/64', site: '2001:db8:aa::/48' });
    expect(addressBlocks('::1')).toEqual({ host: '0:0:0:0::/64', site: '0:0:0::/48' });
    expect(addressBlocks('not an address')).toEqual({ host: 'not an address', site: 'not an address' });
  });
});

describe('the flows one client may hold', () => {
  it('20 per /64, whichever of its addresses start them: the oldest gives way; another /64 keeps its own', async () => {
    const now = Date.now();
    const flows: string[] = [];
    for (let i = 0; i < 25; i++)
      flows.push((await oidc.start('acme', redirect, now, `2001:db8:1:2::${(i + 1).toString(16)}`)).flowId);
    const other = (await oidc.start('acme', redirect, now, '2001:db8:1:3::1')).flowId;
    // The first five are gone (each checked once: a finished flow is spent).
    for (const id of flows.slice(0, 5)) expect(await held(id, now)).toBe(false);
    expect(await held(flows[5]!, now)).toBe(true);
    expect(await held(flows[24]!, now)).toBe(true);
    expect(await held(other, now)).toBe(true);
  });

  it('200 per /48, from however many of its /64s', async () => {
    const now = Date.now();
    const flows: string[] = [];
    for (let i = 0; i < 205; i++)
      flows.push((await oidc.start('acme', redirect, now, `2001:db8:2:${(i + 1).toString(16)}::1`)).flowId);
    const elsewhere = (await oidc.start('acme', redirect, now, '198.51.100.9')).flowId;
    for (const id of flows.slice(0, 5)) expect(await held(id, now)).toBe(false);
    expect(await held(flows[5]!, now)).toBe(true);
    expect(await held(flows[204]!, now)).toBe(true);
    expect(await held(elsewhere, now)).toBe(true);
  });
});
