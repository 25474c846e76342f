import { createHmac, hash } from 'node:crypto';

const MAX_BYTES = 1024;

/** (partner, raw subject) → keyed pseudonym; the raw value never leaves this function. */
export type Pseudonymiser = (partnerId: string, subject: string) => string;

/** The per-partner key of one secret: the same raw identifier at two partners gives unrelated pseudonyms. */
export function partnerKey(secret: Buffer, partnerId: string): Buffer {
  return createHmac('sha256', secret).update(`parity/pseudonym/v1/${partnerId}`).digest();
}

/**
 * One more generation over a pseudonym: what a rotation applies to every stored pseudonym,
 * and ingest after it to every new one, so a subject keeps one pseudonym across rotations.
 */
export function rekey(key: Buffer, pseudonym: string): string {
  return createHmac('sha256', key).update(pseudonym, 'utf8').digest('base64url');
}

/**
 * HMAC-SHA-256 under a per-partner key derived from the room secret, so the same raw
 * identifier at two partners gives unrelated pseudonyms (no cross-partner linkage). After
 * secret rotations, `rotations` (oldest first) re-key the result, as they re-keyed the points.
 */
export function createPseudonymiser(secret: Buffer, rotations: readonly Buffer[] = []): Pseudonymiser {
  if (rotations.length > 0) {
    const base = createPseudonymiser(secret);
    const keys = new Map<string, Buffer[]>();
    return (partnerId, subject) => {
      let ks = keys.get(partnerId);
      if (!ks) keys.set(partnerId, (ks = rotations.map((r) => partnerKey(r, partnerId))));
      let p = base(partnerId, subject);
      for (const k of ks) p = rekey(k, p);
      return p;
    };
  }
  const pads = new Map<string, { key: Buffer; inner: Buffer; outer: Buffer }>();
  return (partnerId, subject) => {
    let p = pads.get(partnerId);
    if (!p) {
      const key = partnerKey(secret, partnerId);
      p = { key, inner: Buffer.alloc(64 + MAX_BYTES), outer: Buffer.alloc(64 + 32) };
      for (let i = 0; i < 64; i++) {
        p.inner[i] = (key[i] ?? 0) ^ 0x36;
        p.outer[i] = (key[i] ?? 0) ^ 0x5c;
      }
      pads.set(partnerId, p);
    }
    // RFC 2104 HMAC written out over reused buffers: the same bytes as createHmac (tested),
    // without a Hmac object per point, which the garbage collector felt at ingest rates.
    // 256 UTF-16 units are at most 768 UTF-8 bytes; only longer strings need measuring.
    if (subject.length > 256 && Buffer.byteLength(subject, 'utf8') > MAX_BYTES)
      return createHmac('sha256', p.key).update(subject, 'utf8').digest('base64url');
    const n = p.inner.write(subject, 64, 'utf8');
    (hash('sha256', p.inner.subarray(0, 64 + n), 'buffer') as Buffer).copy(p.outer, 64);
    return hash('sha256', p.outer, 'base64url');
  };
}
