// The release step's decision (docs/privacy.md §3) on hand-made changes: which partner × day ×
// dims groups of a KPI's change stay pending. The random comparison with the rule computed
// naively over a real DuckDB is in tests/integration/disclosure-property.test.ts ("the release step").
import { describe, expect, it } from 'vitest';
import { agreementSchema, type Agreement, type AgreementInput } from '../../services/platform/agreement-schema.js';
import { disclosureRules } from '../../services/query/disclosure.js';
import { heldGroups, NEEDS_SUBJECTS, type ChangeGroup, type ReleasedAtom } from '../../services/query/release.js';

function agreementWith(
  kpi: Partial<AgreementInput['kpis'][number]>,
  opts: { partners?: number; consent?: boolean } = {},
) {
  const input: AgreementInput = {
    partnership: { id: 'unit', title: 'Unit', timezone: 'UTC' },
    partners: Array.from({ length: opts.partners ?? 2 }, (_, i) => ({ id: `p${i}`, name: `P${i}` })),
    defaults: { minGroupSize: 3 },
    steering: [{ name: 'Chair', email: 'chair@example.org' }],
    twoPartyConsent: opts.consent ?? true,
    kpis: [
      {
        id: 'k',
        title: 'K',
        unit: 'u',
        subject: 'thing',
        measure: 'avg',
        grains: ['day', 'week'],
        dimensions: { region: ['a', 'b'] },
        disclosure: 'partnership',
        breakdown: 'per_partner',
        band: { lower: 0 },
        freshness: { every: 'P1D', grace: 'PT6H' },
        owners: { p0: { name: 'Owner', email: 'owner@example.org' } },
        escalation: { ackWithin: 'P2D' },
        ...kpi,
        evaluate: { grain: (kpi.grains ?? ['day'])[0]! },
      },
    ],
  };
  return agreementSchema.parse(input);
}

/** A group of `subjects` (its distinct subjects, read) of `partner` on `day` in `region`, sum `s`. */
function group(
  partner: string,
  day: string,
  region: string | null,
  subjects: string[],
  s = subjects.length,
): ChangeGroup {
  return {
    kpi: 'k',
    partner,
    day,
    dims: region === null ? null : JSON.stringify({ region }),
    values: { region },
    d: subjects.length,
    s,
    subjects,
  };
}

const decide = (a: Agreement, groups: ChangeGroup[]) => {
  const held = heldGroups(a.kpis[0]!, disclosureRules(a, a.kpis[0]!), groups);
  return held === NEEDS_SUBJECTS ? held : held.map((g) => `${g.partner} ${g.day} ${g.values['region']}`).sort();
};

const MON = '2026-03-02';
const TUE = '2026-03-03';

describe('heldGroups: what a release step keeps pending', () => {
  it('releases everything when every part of every readable cell has k subjects', () => {
    const a = agreementWith({});
    expect(decide(a, [group('p0', MON, 'a', ['x', 'y', 'z']), group('p1', MON, 'b', ['u', 'v', 'w', 't'])])).toEqual(
      [],
    );
  });

  it('holds a group whose day × region part is under k, and only it when the rest still passes', () => {
    const a = agreementWith({});
    const groups = [group('p0', MON, 'a', ['x', 'y', 'z']), group('p0', MON, 'b', ['u', 'v'])];
    expect(decide(a, groups)).toEqual([`p0 ${MON} b`]);
  });

  it("decides in rounds: a group held in one cell can leave another cell's part too small", () => {
    // Two dimensions, days only. Round 1: size l's part (z) and region b's part (w) are under k,
    // so those groups wait; region a's part (x, y + z) and size s's (x, y + w) still pass. Round
    // 2: without them, region a's part is x, y alone — under k — so that group waits too.
    const a = agreementWith({ grains: ['day'], dimensions: { region: ['a', 'b'], size: ['s', 'l'] } });
    const at = (region: string, size: string, subjects: string[]): ChangeGroup => ({
      ...group('p0', MON, region, subjects),
      dims: JSON.stringify({ region, size }),
      values: { region, size },
    });
    const held = heldGroups(a.kpis[0]!, disclosureRules(a, a.kpis[0]!), [
      at('a', 's', ['x', 'y']),
      at('a', 'l', ['z']),
      at('b', 's', ['w']),
    ]);
    expect(held === NEEDS_SUBJECTS ? held : held.map((g) => g.dims).sort()).toEqual([
      '{"region":"a","size":"l"}',
      '{"region":"a","size":"s"}',
      '{"region":"b","size":"s"}',
    ]);
  });

  it('counts a part of small groups as the union of their subjects: shared subjects count once', () => {
    const a = agreementWith({ grains: ['week'], dimensions: {} });
    const distinct = [group('p0', MON, null, ['x', 'y']), group('p0', TUE, null, ['z'])];
    expect(decide(a, distinct)).toEqual([]);
    const shared = [group('p0', MON, null, ['x', 'y']), group('p0', TUE, null, ['y', 'x'])];
    expect(decide(a, shared)).toEqual([`p0 ${MON} null`, `p0 ${TUE} null`]);
  });

  it('needs the subjects only where no group vouches for k', () => {
    const a = agreementWith({ grains: ['week'], dimensions: {} });
    const unread = (g: ChangeGroup): ChangeGroup => ({ ...g, subjects: undefined });
    // A group of k in the part: decided without any subject.
    expect(decide(a, [unread(group('p0', MON, null, ['x', 'y', 'z'])), unread(group('p0', TUE, null, ['w']))])).toEqual(
      [],
    );
    // Two small groups: their union must be counted.
    expect(decide(a, [unread(group('p0', MON, null, ['x', 'y'])), unread(group('p0', TUE, null, ['w']))])).toBe(
      NEEDS_SUBJECTS,
    );
  });

  it('holds every partner of a combined cell with fewer than three partners, without consent', () => {
    const a = agreementWith(
      { breakdown: 'combined', dimensions: {}, grains: ['day'] },
      { partners: 3, consent: false },
    );
    const two = [group('p0', MON, null, ['x', 'y', 'z']), group('p1', MON, null, ['u', 'v', 'w'])];
    expect(decide(a, two)).toEqual([`p0 ${MON} null`, `p1 ${MON} null`]);
    const three = [...two, group('p2', MON, null, ['r', 's', 't'])];
    expect(decide(a, three)).toEqual([]);
    // A third partner under k waits; the cell then has two partners, so the other two wait too.
    expect(decide(a, [...two, group('p2', MON, null, ['r', 's'])])).toEqual([
      `p0 ${MON} null`,
      `p1 ${MON} null`,
      `p2 ${MON} null`,
    ]);
  });

  it('holds the part that dominates a sum cell, by the share of the absolute sums, round after round', () => {
    const a = agreementWith(
      { measure: 'sum', dominance: 60, dimensions: {}, grains: ['day'], breakdown: 'combined' },
      {
        partners: 3,
      },
    );
    // p0 holds 70 of 100: above 60 %. Without it p1 holds 20 of 30, and then p2 is alone.
    const three = [
      group('p0', MON, null, ['x', 'y', 'z'], 70),
      group('p1', MON, null, ['u', 'v', 'w'], 20),
      group('p2', MON, null, ['r', 's', 't'], 10),
    ];
    expect(decide(a, three)).toEqual([`p0 ${MON} null`, `p1 ${MON} null`, `p2 ${MON} null`]);
    expect(decide(a, three.slice(1).concat(group('p0', MON, null, ['x', 'y', 'z'], 15)))).toEqual([]);
    // Negative sums count by their size: 50 of 100 each.
    expect(
      decide(a, [group('p0', MON, null, ['x', 'y', 'z'], 50), group('p1', MON, null, ['u', 'v', 'w'], -50)]),
    ).toEqual([]);
  });

  it('names the groups whose part dominated a change beside another part: those wait for their own partner (§3)', () => {
    const rules = (consent: boolean) =>
      agreementWith(
        { measure: 'sum', dominance: 60, dimensions: {}, grains: ['day'], breakdown: 'combined' },
        { partners: 3, consent },
      );
    const three = [
      group('p0', MON, null, ['x', 'y', 'z'], 70),
      group('p1', MON, null, ['u', 'v', 'w'], 20),
      group('p2', MON, null, ['r', 's', 't'], 10),
    ];
    const dominatedOf = (a: Agreement, groups: ChangeGroup[]) => {
      const dominated: ChangeGroup[] = [];
      const held = heldGroups(a.kpis[0]!, disclosureRules(a, a.kpis[0]!), groups, [], undefined, dominated);
      if (held === NEEDS_SUBJECTS) throw new Error('counted');
      for (const g of dominated) expect(held).toContain(g);
      return dominated.map((g) => g.partner).sort();
    };
    // With consent: p0 (70 of 100), then p1 (20 of 30) once p0 dropped; p2, alone at last, holds
    // all of a change no other part is weighed against, and does not wait.
    expect(dominatedOf(rules(true), three)).toEqual(['p0', 'p1']);
    // Without: p0 only; p1 and p2 are then two partners, which the three-partner rule holds.
    expect(dominatedOf(rules(false), three)).toEqual(['p0']);
    // A part alone in its cell holds all of a change no other part is weighed against.
    expect(dominatedOf(rules(true), [group('p0', MON, null, ['x', 'y', 'z'], 70)])).toEqual([]);
    // Nobody dominates: nothing waits.
    expect(dominatedOf(rules(false), [three[1]!, three[2]!, group('p0', MON, null, ['x', 'y', 'z'], 15)])).toEqual([]);
  });

  describe('the step guard of quantile KPIs (docs/privacy.md §2.3)', () => {
    const released = (partner: string, day: string, region: string | null, last: number): ReleasedAtom => ({
      partner,
      day,
      values: { region },
      last,
    });
    const decideAfter = (a: Agreement, groups: ChangeGroup[], history: ReleasedAtom[]) => {
      const held = heldGroups(a.kpis[0]!, disclosureRules(a, a.kpis[0]!), groups, history);
      return held === NEEDS_SUBJECTS ? held : held.map((g) => `${g.partner} ${g.day} ${g.values['region']}`).sort();
    };
    const mine = group('p1', MON, null, ['u', 'v', 'w']);

    it.each(['p50', 'p90', 'p95'] as const)(
      '%s: a partner that moved a cell alone last, with the others unchanged, waits for them',
      (measure) => {
        const a = agreementWith({ measure, grains: ['day'], dimensions: {} });
        // p0's points came at 4; p1 stepped the median alone at 5: its next step waits.
        expect(decideAfter(a, [mine], [released('p0', MON, null, 4), released('p1', MON, null, 5)])).toEqual([
          `p1 ${MON} null`,
        ]);
        // The last move was p0's (or both partners'): p1 may move the cell once.
        expect(decideAfter(a, [mine], [released('p0', MON, null, 5), released('p1', MON, null, 4)])).toEqual([]);
        expect(decideAfter(a, [mine], [released('p0', MON, null, 5), released('p1', MON, null, 5)])).toEqual([]);
        // Moving it together with another partner changes the others' points: released.
        expect(
          decideAfter(
            a,
            [mine, group('p0', MON, null, ['x', 'y', 'z'])],
            [released('p0', MON, null, 4), released('p1', MON, null, 5)],
          ),
        ).toEqual([]);
      },
    );

    it("is about cells with another partner's points, on every grain and dimension; other measures are not guarded", () => {
      const a = agreementWith({ measure: 'p50', grains: ['day', 'week'], dimensions: { region: ['a', 'b'] } });
      // Alone in the cell: p1's own points only, nothing of anyone else's to step across.
      expect(decideAfter(a, [mine], [released('p1', MON, null, 5)])).toEqual([]);
      // p0 has points only on Tuesday: Monday's cell is p1's alone, but the week holds both, and p1 moved it last.
      expect(decideAfter(a, [mine], [released('p0', TUE, null, 4), released('p1', TUE, null, 5)])).toEqual([
        `p1 ${MON} null`,
      ]);
      // Region a's cell: p0 and p1 there, p1 moved it last; Monday's total was last moved by p0.
      const inA = group('p1', MON, 'a', ['u', 'v', 'w']);
      expect(
        decideAfter(a, [inA], [released('p0', MON, 'a', 4), released('p1', MON, 'a', 5), released('p0', MON, 'b', 6)]),
      ).toEqual([`p1 ${MON} a`]);
      // A sum or an average has no guard (a ratio's moves are treated as disclosing its sum and count).
      for (const measure of ['sum', 'avg', 'rate'] as const) {
        const b = agreementWith({ measure, grains: ['day'], dimensions: {} });
        expect(decideAfter(b, [mine], [released('p0', MON, null, 4), released('p1', MON, null, 5)])).toEqual([]);
      }
    });

    it('is decided in rounds with the contributor rule: a partner whose change falls below k leaves the other alone', () => {
      const a = agreementWith({ measure: 'p50', grains: ['day'], dimensions: {} });
      // p0's change is under k, so it waits; p1 then moves the cell alone after its own last move: it waits too.
      expect(
        decideAfter(
          a,
          [mine, group('p0', MON, null, ['x', 'y'])],
          [released('p0', MON, null, 4), released('p1', MON, null, 5)],
        ),
      ).toEqual([`p0 ${MON} null`, `p1 ${MON} null`]);
    });

    it('names the held groups that wait: guard-held with no other partner in any of their cells', () => {
      const a = agreementWith({ measure: 'p50', grains: ['day', 'week'], dimensions: { region: ['a', 'b'] } });
      const rules = disclosureRules(a, a.kpis[0]!);
      const waitingOf = (groups: ChangeGroup[], history: ReleasedAtom[]) => {
        const waiting: ChangeGroup[] = [];
        const held = heldGroups(a.kpis[0]!, rules, groups, history, waiting);
        if (held === NEEDS_SUBJECTS) throw new Error('counted');
        // Every waiting group is held.
        for (const g of waiting) expect(held).toContain(g);
        return waiting.map((g) => `${g.partner} ${g.day} ${g.values['region']}`).sort();
      };
      const history = [released('p0', MON, null, 4), released('p1', MON, null, 5)];
      // p1 alone, last mover of Monday: it waits.
      expect(waitingOf([mine], history)).toEqual([`p1 ${MON} null`]);
      // Held by the guard, but p0 changes Tuesday of the same week (too few subjects, so it is held
      // too): a later p0 batch may lift it, and then p1's cells change, so p1 does not wait.
      const small = group('p0', TUE, null, ['x']);
      expect(decideAfter(a, [mine, small], history)).toEqual([`p0 ${TUE} null`, `p1 ${MON} null`]);
      expect(waitingOf([mine, small], history)).toEqual([]);
      // Held for k alone (no guard): a later batch of its own may lift it, so it does not wait.
      expect(waitingOf([group('p1', MON, null, ['u'])], [released('p0', MON, null, 5)])).toEqual([]);
      // The last move was p0's: released, nothing waits.
      expect(waitingOf([mine], [released('p0', MON, null, 5), released('p1', MON, null, 4)])).toEqual([]);
      // Other measures never wait.
      const b = agreementWith({ measure: 'sum', grains: ['day'], dimensions: {} });
      const waiting: ChangeGroup[] = [];
      heldGroups(b.kpis[0]!, disclosureRules(b, b.kpis[0]!), [mine], history, waiting);
      expect(waiting).toEqual([]);
    });
  });
});
