// The partners' identity providers file (PARITY_OIDC_FILE, issue #16): what a bad one gets —
// a start-up error naming the provider and field — and what a good one means.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import { loadOidcProviders } from '../../services/governance/oidc.js';

const dir = mkdtempSync(join(tmpdir(), 'parity-oidc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const demo = loadAgreementFile('fixtures/demo-agreement.yaml');
if (!demo.ok) throw new Error('demo agreement');

const acme = `{ partner: acme, issuer: 'https://login.acme.example/realms/acme', clientId: parity, clientSecret: s, domains: [acme.example] }`;
function load(text: string) {
  const f = join(dir, `oidc-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return () => loadOidcProviders(f, demo.ok ? demo.agreement : (undefined as never));
}

describe('PARITY_OIDC_FILE', () => {
  it('reads one provider per partner, its secret from the environment where named', () => {
    process.env['PARITY_TEST_GLOBEX_SECRET'] = 'from-env';
    try {
      const m = load(`providers:
  - ${acme}
  - { partner: globex, issuer: 'https://globex.okta.example', clientId: parity, clientSecretEnv: PARITY_TEST_GLOBEX_SECRET, domains: [globex.example], roles: { admins: admin }, defaultRole: analyst }
`)();
      expect([...m.keys()]).toEqual(['acme', 'globex']);
      expect(m.get('globex')).toMatchObject({
        secret: 'from-env',
        groupsClaim: 'groups',
        roles: { admins: 'admin' },
        scopes: ['openid', 'email', 'profile'],
      });
      expect(m.get('acme')!.defaultRole).toBeUndefined();
    } finally {
      delete process.env['PARITY_TEST_GLOBEX_SECRET'];
    }
  });

  it.each([
    ['providers: []', /providers: .*at least|too small|>=1/i],
    ['providers: [{ partner: acme }]', /providers\.0\.issuer/],
    [`providers: [${acme.replace('[acme.example] }', '[acme.example], extra: 1 }')}]`, /extra/],
    [
      `providers: [${acme.replace('partner: acme', 'partner: nobody')}]`,
      /providers\.0\.partner: nobody is not a partner/,
    ],
    [`providers: [${acme}, ${acme}]`, /providers\.1\.partner: acme has a provider already/],
    [
      `providers: [${acme}, { partner: globex, issuer: 'https://g.example', clientId: p, domains: [acme.example] }]`,
      /providers\.1\.domains: acme\.example is acme's already/,
    ],
    [`providers: [${acme.replace('https://login.acme.example', 'http://login.acme.example')}]`, /over https/],
    [
      `providers: [${acme.replace('clientSecret: s', 'clientSecretEnv: PARITY_TEST_MISSING')}]`,
      /has no PARITY_TEST_MISSING/,
    ],
    [`providers: [${acme.replace('[acme.example]', '[not a domain]')}]`, /providers\.0\.domains\.0/],
    [
      `providers: [${acme.replace('clientSecret: s', 'clientSecret: s, roles: { x: operator }')}]`,
      /providers\.0\.roles\.x/,
    ],
    ['providers: [ {', /PARITY_OIDC_FILE/],
  ])('%s is refused', (text, message) => {
    expect(load(text)).toThrow(message);
  });
});
