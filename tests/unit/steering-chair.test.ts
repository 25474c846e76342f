// The steering committee's rotating chair (issue #15): who chairs on a given day for terms of
// weeks, months and years, before the first term and without a rotation; and the agreement's
// refusals (a chair who is not a member, one named twice, a monthly term from the 29th).
import { describe, expect, it } from 'vitest';
import { validateAgreement, type Agreement } from '../../services/platform/agreement-schema.js';
import { chairAt } from '../../services/platform/steering-chair.js';
import YAML from 'yaml';
import { readFileSync } from 'node:fs';

const steering = [
  { name: 'A', email: 'a@x.example' },
  { name: 'B', email: 'b@x.example' },
  { name: 'C', email: 'c@x.example' },
];
const room = (chair?: Agreement['chair'], timezone = 'UTC') =>
  ({ steering, chair, partnership: { id: 'p', title: 'p', timezone } }) as Pick<
    Agreement,
    'steering' | 'chair' | 'partnership'
  >;
const on = (a: ReturnType<typeof room>, iso: string) => chairAt(a, new Date(iso));

describe('the chair of the day', () => {
  it('without a rotation is the first member, with no term', () => {
    expect(on(room(), '2026-11-30T12:00:00Z')).toEqual({
      name: 'A',
      email: 'a@x.example',
      since: null,
      until: null,
      next: null,
    });
  });

  it('rotates monthly terms in order, the term beginning on the day of the month it began', () => {
    const a = room({ every: 'P2M', from: '2026-01-15' });
    expect(on(a, '2026-01-15T00:00:00Z')).toMatchObject({
      email: 'a@x.example',
      since: '2026-01-15',
      until: '2026-03-15',
      next: { email: 'b@x.example' },
    });
    expect(on(a, '2026-03-14T23:59:59Z')).toMatchObject({ email: 'a@x.example' });
    expect(on(a, '2026-03-15T00:00:00Z')).toMatchObject({ email: 'b@x.example', since: '2026-03-15' });
    expect(on(a, '2026-05-20T00:00:00Z')).toMatchObject({
      email: 'c@x.example',
      until: '2026-07-15',
      next: { email: 'a@x.example' },
    });
    expect(on(a, '2026-07-15T00:00:00Z')).toMatchObject({ email: 'a@x.example' }); // round again
  });

  it('follows `order`, weeks and years, in the partnership time zone', () => {
    const weeks = room({ every: 'P2W', from: '2026-11-02', order: ['c@x.example', 'a@x.example'] }, 'Europe/Berlin');
    // 23:30 UTC on the 15th is already the 16th in Berlin: the second term.
    expect(on(weeks, '2026-11-15T22:59:00Z')).toMatchObject({ email: 'c@x.example', until: '2026-11-16' });
    expect(on(weeks, '2026-11-15T23:30:00Z')).toMatchObject({ email: 'a@x.example', since: '2026-11-16' });
    const years = room({ every: 'P1Y', from: '2024-04-01' });
    expect(on(years, '2026-11-30T00:00:00Z')).toMatchObject({
      email: 'c@x.example',
      since: '2026-04-01',
      until: '2027-04-01',
    });
  });

  it('before the first term, the first in order chairs through it, with no term begun', () => {
    expect(on(room({ every: 'P1M', from: '2027-01-01' }), '2026-11-30T00:00:00Z')).toMatchObject({
      email: 'a@x.example',
      since: null,
      until: '2027-02-01',
      next: { email: 'b@x.example' },
    });
    expect(
      on(room({ every: 'P1M', from: '2027-01-01', order: ['b@x.example'] }), '2026-11-30T00:00:00Z'),
    ).toMatchObject({
      email: 'b@x.example',
      next: null,
    });
  });
});

describe('the agreement refuses', () => {
  const demo = () => YAML.parse(readFileSync('fixtures/demo-agreement.yaml', 'utf8')) as Record<string, any>;
  it.each([
    [{ every: 'P1M', from: '2026-01-01', order: ['stranger@x.example'] }, 'chair.order[0]', /not a steering member/],
    [
      { every: 'P1M', from: '2026-01-01', order: ['chair@example.org', 'CHAIR@example.org'] },
      'chair.order[1]',
      /twice/,
    ],
    [{ every: 'P1M', from: '2026-01-29' }, 'chair.from', /day 1–28/],
    [{ every: 'P1D', from: '2026-01-01' }, 'chair.every', /weeks, months or years/],
    [{ every: 'P0M', from: '2026-01-01' }, 'chair.every', /weeks, months or years/],
    [{ every: 'P1M' }, 'chair.from', /./],
    [{ every: 'P1M', from: '2026-01-01', extra: 1 }, 'chair', /extra/],
  ])('%j at %s', (chair, path, message) => {
    const r = validateAgreement({ ...demo(), chair });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems.map((p) => p.path)).toContain(path);
    expect(r.problems.find((p) => p.path === path)!.message).toMatch(message);
  });
});
