import { describe, expect, it } from 'vitest';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import {
  BAD_DATE,
  BAD_FORMAT,
  compileValidator,
  parseIsoWithOffset,
  RowErrors,
} from '../../services/ingest/point-validator.js';

describe('parseIsoWithOffset', () => {
  it('agrees with Date.parse on valid date-times with every offset form', () => {
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    const pad = (n: number, w = 2) => String(n).padStart(w, '0');
    for (let i = 0; i < 5000; i++) {
      const y = 2000 + rnd(40);
      const mo = 1 + rnd(12);
      const d = 1 + rnd(28);
      const base = `${y}-${pad(mo)}-${pad(d)}T${pad(rnd(24))}:${pad(rnd(60))}`;
      const sec = rnd(3) === 0 ? '' : `:${pad(rnd(60))}${rnd(2) ? `.${String(rnd(1000)).padStart(3, '0')}` : ''}`;
      const off = ['Z', `+${pad(rnd(15))}:${pad(rnd(4) * 15)}`, `-${pad(rnd(12))}:30`][rnd(3)]!;
      const s = base + sec + off;
      expect(parseIsoWithOffset(s), s).toBe(Date.parse(s));
    }
    expect(parseIsoWithOffset('2026-11-01T10:00:00.123456789Z')).toBe(Date.parse('2026-11-01T10:00:00.123Z'));
    expect(parseIsoWithOffset('2026-11-01T10:00:00+0100')).toBe(Date.parse('2026-11-01T09:00:00Z'));
    expect(parseIsoWithOffset('2024-02-29T00:00:00Z')).toBe(Date.parse('2024-02-29T00:00:00Z'));
  });

  it.each([
    '2026-11-01T10:00:00',
    '2026-11-01 10:00:00Z',
    '2026-11-01',
    '26-11-01T10:00:00Z',
    '2026-11-01T10:00:00.Z',
    '2026-11-01T10:00:00z',
    'yesterday',
    '2026-11-01T10:00:00Z ',
    '2026-11-01T1a:00:00Z',
    '2026-11-01T10:00:00+1',
  ])('%s has the wrong form', (s) => expect(parseIsoWithOffset(s)).toBe(BAD_FORMAT));

  it.each([
    '2026-02-29T10:00:00Z',
    '2026-02-30T10:00:00Z',
    '2026-13-01T10:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-11-01T24:00:00Z',
    '2026-11-01T10:60:00Z',
    '2026-11-01T10:00:60Z',
    '2026-11-01T10:00:00+19:00',
    '2026-00-10T10:00:00Z',
  ])('%s is no real instant', (s) => expect(parseIsoWithOffset(s)).toBe(BAD_DATE));
});

describe('point validator', () => {
  const r = loadAgreementFile('fixtures/demo-agreement.yaml');
  if (!r.ok) throw new Error('demo agreement invalid');
  const validate = compileValidator(r.agreement, {
    now: () => Date.parse('2026-11-23T12:00:00Z'),
    clockSkewMs: 300_000,
  });

  it('returns the landed form with canonical dimensions', () => {
    const errors = new RowErrors();
    const p = validate(
      { kpi: 'lead_time', at: '2026-11-01T11:00:00+01:00', value: 41.5, subject: 'ORD-1', dims: { region: 'north' } },
      1,
      errors,
    );
    expect(p).toEqual({
      kpi: 'lead_time',
      atMs: Date.parse('2026-11-01T10:00:00Z'),
      value: 41.5,
      subject: 'ORD-1',
      dims: '{"region":"north"}',
    });
    expect(errors.rejectedRows).toBe(0);
  });

  it('collects every problem of a row, counts the row once, never echoes the subject', () => {
    const errors = new RowErrors();
    const p = validate(
      { kpi: 'error_rate', at: '2026-12-01T00:00:00Z', value: 0.5, subject: 'S'.repeat(300), dims: { region: 'east' } },
      7,
      errors,
      ['partner'],
    );
    expect(p).toBeNull();
    expect(errors.rejectedRows).toBe(1);
    expect(errors.kept.map((e) => e.field)).toEqual(['partner', 'at', 'value', 'subject', 'dims.region']);
    expect(errors.kept.every((e) => e.row === 7)).toBe(true);
    expect(JSON.stringify(errors.kept)).not.toContain('SSSS');
  });

  it('keeps 100 errors and says when more were dropped', () => {
    const errors = new RowErrors();
    for (let i = 1; i <= 101; i++)
      validate({ kpi: 'nope', at: '2026-11-01T00:00:00Z', value: 1, subject: 'x' }, i, errors);
    expect(errors.kept).toHaveLength(100);
    expect(errors.truncated).toBe(true);
    expect(errors.rejectedRows).toBe(101);
  });
});
