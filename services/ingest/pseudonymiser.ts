import { createHmac } from 'node:crypto';

/** (partner, raw subject) → keyed pseudonym; the raw value never leaves this function. */
export type Pseudonymiser = (partnerId: string, subject: string) => string;

/**
 * HMAC-SHA-256 under a per-partner key derived from the room secret, so the same raw
 * identifier at two partners gives unrelated pseudonyms (no cross-partner linkage).
 */
export function createPseudonymiser(secret: Buffer): Pseudonymiser {
  const partnerKeys = new Map<string, Buffer>();
  return (partnerId, subject) => {
    let key = partnerKeys.get(partnerId);
    if (!key) {
      key = createHmac('sha256', secret).update(`parity/pseudonym/v1/${partnerId}`).digest();
      partnerKeys.set(partnerId, key);
    }
    return createHmac('sha256', key).update(subject, 'utf8').digest('base64url');
  };
}
