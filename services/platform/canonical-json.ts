import { createHash } from 'node:crypto';

/** JSON already in canonical form, embedded as it is (a result's cells, serialised once for its digest). */
export class CanonicalFragment {
  constructor(readonly json: string) {}
}

/** Canonical JSON: keys sorted, no whitespace, undefined dropped; the basis of every digest. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (value instanceof CanonicalFragment) return value.json;
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ',' : '') + canonicalJson(value[i]);
    return out + ']';
  }
  const keys = Object.keys(value).sort();
  let out = '{';
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue;
    out += (out.length > 1 ? ',' : '') + JSON.stringify(k) + ':' + canonicalJson(v);
  }
  return out + '}';
}

/** SHA-256 (hex) of a string: the digest of canonical JSON already serialised. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** SHA-256 (hex) of the canonical JSON of a value: the digest of every result and agreement. */
export function canonicalDigest(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}
