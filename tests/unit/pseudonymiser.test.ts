import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createPseudonymiser, partnerKey, rekey } from '../../services/ingest/pseudonymiser.js';

describe('pseudonymiser', () => {
  const secret = randomBytes(32);
  const reference = (partner: string, subject: string) => {
    const key = createHmac('sha256', secret).update(`parity/pseudonym/v1/${partner}`).digest();
    return createHmac('sha256', key).update(subject, 'utf8').digest('base64url');
  };
  const pseudonymise = createPseudonymiser(secret);

  it.each([
    'ORD-1',
    '',
    'Kunde Müller',
    '顧客-42',
    '🚚📦-delivery',
    "'); DROP TABLE points; --",
    'x'.repeat(256),
    '€'.repeat(400),
    'y'.repeat(5000),
  ])('is HMAC-SHA-256 under the partner key for %s', (subject) => {
    expect(pseudonymise('acme', subject)).toBe(reference('acme', subject));
  });

  it('scopes pseudonyms per partner and keeps them stable', () => {
    const a = pseudonymise('acme', 'CUST-1');
    expect(pseudonymise('globex', 'CUST-1')).not.toBe(a);
    expect(pseudonymise('acme', 'CUST-10')).not.toBe(a);
    expect(pseudonymise('acme', 'CUST-1')).toBe(a);
    expect(createPseudonymiser(randomBytes(32))('acme', 'CUST-1')).not.toBe(a);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('pseudonyms after secret rotations', () => {
  it('re-key the first generation with each rotation key in turn, per partner — what the rotation applied to stored ones', () => {
    const secret = randomBytes(32);
    const [k2, k3] = [randomBytes(32), randomBytes(32)];
    const first = createPseudonymiser(secret)('acme', 'CUST-1');
    const third = createPseudonymiser(secret, [k2, k3])('acme', 'CUST-1');
    expect(third).toBe(rekey(partnerKey(k3, 'acme'), rekey(partnerKey(k2, 'acme'), first)));
    expect(third).not.toBe(first);
    expect(createPseudonymiser(secret, [k2, k3])('globex', 'CUST-1')).not.toBe(third);
    expect(third).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});
