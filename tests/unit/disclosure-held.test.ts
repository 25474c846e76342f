// A held cell shows the value of its released points (docs/privacy.md §3). Those were checked as
// they were released, in the cells of that time; after an agreement change they can sit in a
// cell where fewer than k of them are released, and the red team read one partner's single
// value that way (a day grain added back; a time-zone change). Such a cell is withheld.
import { describe, expect, it } from 'vitest';
import { disclose, type DisclosureRules, type RawCell } from '../../services/query/disclosure.js';

const rules: DisclosureRules = { minGroupSize: 3, threePartners: false, counts: 'none', dominance: null };
const cell = (over: Partial<RawCell>): RawCell => ({
  period: '2026-11-02',
  group: 'globex',
  value: 9,
  n: 5,
  minPart: 5,
  partners: 1,
  protects: false,
  dominated: false,
  pending: false,
  asOf: null,
  relMinPart: over.n ?? 5,
  ...over,
});

describe('a held cell', () => {
  it('is withheld when fewer than k of its subjects are released, whatever all its points would allow', () => {
    for (const released of [1, 2]) {
      const [c] = disclose([cell({ pending: true, asOf: 7, n: released, value: 9 })], rules);
      expect(c, `${released} released`).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'few_subjects' });
    }
  });

  it('is withheld when one partner’s released part is below k, though the released subjects of all reach k', () => {
    // A combined cell: 7 released subjects in all, one partner's 2 of them.
    const [c] = disclose([cell({ group: null, partners: 2, pending: true, asOf: 7, n: 7, relMinPart: 2 })], rules);
    expect(c).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'few_subjects' });
    expect(
      disclose([cell({ group: null, partners: 2, pending: true, asOf: 7, n: 7, relMinPart: 3 })], rules)[0],
    ).toMatchObject({ state: 'held', asOf: 7 });
  });

  it('shows the value of its released points with asOf once k of them are released', () => {
    const [c] = disclose([cell({ pending: true, asOf: 7, n: 3, value: 4.5 })], rules);
    expect(c).toMatchObject({ state: 'held', value: 4.5, asOf: 7 });
    // A cell with nothing pending is judged on all its points, as before.
    expect(disclose([cell({ n: 3 })], rules)[0]).toMatchObject({ state: 'ok', value: 9 });
    expect(disclose([cell({ n: 2, minPart: 2 })], rules)[0]).toMatchObject({ state: 'suppressed' });
  });
});
