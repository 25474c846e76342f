import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  MEASURES,
  Q,
  QUANTILE,
  addDays,
  audit,
  auditScenario,
  cellLabel,
  checkDirection,
  checkWitness,
  explain,
  feasibleInterval,
  integerDirection,
  measureValue,
  pointsIn,
  quantileFindings,
  quantileOf,
  quantilePreimage,
  readableCells,
  serve,
  serveToday,
  type CellSpec,
  type DisclosureSystem,
  type Grain,
  type Measure,
  type Point,
  type Scenario,
  type ScenarioAudit,
  type ServedCell,
  type Target,
  type Term,
  type Verdict,
} from '../helpers/disclosure-auditor.js';

const MON = '2026-01-05'; // a Monday
const TUE = '2026-01-06';

const pt = (partner: string, day: string, subject: string, value: number, extra: Partial<Point> = {}): Point => ({
  partner,
  day,
  subject,
  value,
  snapshot: 1,
  ...extra,
});

const cell = (
  grain: Grain,
  period: string,
  by: string,
  group: string | null,
  state: 'ok' | 'suppressed',
  extra: Partial<ServedCell> = {},
): ServedCell => ({
  grain,
  period,
  by,
  group,
  snapshot: 1,
  state,
  ...(state === 'suppressed' ? { reason: 'small' } : {}),
  ...extra,
});

function verdict(a: ScenarioAudit, id: string): { target: Target; verdict: Verdict } {
  const i = a.system.targets.findIndex((t) => t.id === id);
  if (i < 0) throw new Error(`no target ${id}; targets: ${a.system.targets.map((t) => t.id).join(' | ')}`);
  return { target: a.system.targets[i]!, verdict: a.verdicts[i]! };
}

/** Determined, with a witness that checks out and recovers `value`. */
function expectDetermined(a: ScenarioAudit, id: string, value: number): Verdict {
  const { target, verdict: v } = verdict(a, id);
  expect(v.determined, explain(v)).toBe(true);
  expect(v.value!.eq(Q.of(value)), explain(v)).toBe(true);
  expect(checkWitness(a.system, target, v)).toBeNull();
  return v;
}

/** Not determined, with a second completion (direction) that checks out. */
function expectHidden(a: ScenarioAudit, id: string): void {
  const { target, verdict: v } = verdict(a, id);
  expect(v.determined, explain(v)).toBe(false);
  expect(checkDirection(a.system, target, v)).toBeNull();
}

function termsOf(t: Target): readonly Term[] {
  if (t.kind !== 'linear') throw new Error(`${t.id} is a ratio`);
  return t.terms;
}

const coef = (v: Verdict, observation: string): number | undefined =>
  v.witness?.observations.find((o) => o.id === observation)?.coef.toNumber();

// ---------------------------------------------------------------------------------------------------

describe('rank test on hand-written systems', () => {
  const sys = (extra: Partial<DisclosureSystem> = {}): DisclosureSystem => ({
    observations: [
      {
        id: 'x+y',
        terms: [
          { atom: 'x', quantity: 'S' },
          { atom: 'y', quantity: 'S' },
        ],
        value: 10,
      },
      {
        id: 'y+z',
        terms: [
          { atom: 'y', quantity: 'S' },
          { atom: 'z', quantity: 'S' },
        ],
        value: 7,
      },
    ],
    known: [],
    targets: [
      {
        id: 'x-z',
        kind: 'linear',
        terms: [
          { atom: 'x', quantity: 'S' },
          { atom: 'z', quantity: 'S', coef: -1 },
        ],
      },
      { id: 'x', kind: 'linear', terms: [{ atom: 'x', quantity: 'S' }] },
    ],
    ...extra,
  });

  it('a difference of two observations is determined, a part is not', () => {
    const s = sys();
    const [d, x] = audit(s);
    expect(d!.determined).toBe(true);
    expect(d!.value!.eq(Q.of(3))).toBe(true);
    expect(checkWitness(s, s.targets[0]!, d!)).toBeNull();
    expect(x!.determined).toBe(false);
    expect(checkDirection(s, s.targets[1]!, x!)).toBeNull();
  });

  it('a known fact completes it, and the witness names it', () => {
    const s = sys({ known: [{ atom: 'z', quantity: 'S', value: 2 }] });
    const x = audit(s)[1]!;
    expect(x.determined).toBe(true);
    expect(x.value!.eq(Q.of(5))).toBe(true);
    expect(x.witness!.known).toEqual([{ atom: 'z', quantity: 'S', coef: Q.of(1), value: Q.of(2) }]);
    expect(checkWitness(s, s.targets[1]!, x)).toBeNull();
    expect(explain(x)).toMatch(/DETERMINED = 5/);
  });

  it('a ratio is determined through its homogeneous equation, without either part', () => {
    // avg disclosed: S - 4 N = 0; nothing else. The average is pinned, neither S nor N is.
    const s: DisclosureSystem = {
      observations: [
        {
          id: 'avg',
          terms: [
            { atom: 'a', quantity: 'S' },
            { atom: 'a', quantity: 'N', coef: -4 },
          ],
          value: 0,
        },
      ],
      known: [],
      targets: [
        { id: 'ratio', kind: 'ratio', num: [{ atom: 'a', quantity: 'S' }], den: [{ atom: 'a', quantity: 'N' }] },
        { id: 'S', kind: 'linear', terms: [{ atom: 'a', quantity: 'S' }] },
      ],
    };
    const [r, S] = audit(s);
    expect(r!.determined).toBe(true);
    expect(r!.value!.eq(Q.of(4))).toBe(true);
    expect(checkWitness(s, s.targets[0]!, r!)).toBeNull();
    expect(S!.determined).toBe(false);
  });

  it('the certificate checks reject a tampered witness and a visible direction', () => {
    const s = sys();
    const [d, x] = audit(s);
    const bent = { ...d!, witness: { ...d!.witness!, observations: d!.witness!.observations.slice(1) } };
    expect(checkWitness(s, s.targets[0]!, bent)).toMatch(/differs from the target/);
    expect(checkWitness(s, s.targets[0]!, { ...d!, value: Q.of(4) })).toMatch(/value is 3, not 4/);
    const visible = { ...x!, direction: new Map([['S:x', Q.ONE]]) };
    expect(checkDirection(s, s.targets[1]!, visible)).toMatch(/observation x\+y moves by 1/);
  });

  it('refuses contradictory observations', () => {
    const s = sys({
      observations: [
        { id: 'x', terms: [{ atom: 'x', quantity: 'S' }], value: 1 },
        { id: 'x again', terms: [{ atom: 'x', quantity: 'S' }], value: 2 },
      ],
    });
    expect(() => audit(s)).toThrow(/x again contradicts/);
  });

  it('exact rationals: 0.1 is the double 0.1, not one tenth', () => {
    expect(Q.of(0.1).eq(Q.make(1n, 10n))).toBe(false);
    expect(Q.of(0.1).toNumber()).toBe(0.1);
    expect(Q.of(0.5).add(Q.of(0.25)).eq(Q.make(3n, 4n))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------
// One hand-made case per family of the issue: the leak is found with the right witness, and the
// protecting suppression makes it go away.

describe('family 1: own knowledge', () => {
  const scenario: Scenario = {
    measure: 'sum',
    range: [0, 100],
    points: [
      pt('A', MON, 'a1', 1),
      pt('A', MON, 'a2', 2),
      pt('A', MON, 'a3', 3),
      pt('B', MON, 'b1', 10),
      pt('B', MON, 'b2', 20),
      pt('B', MON, 'b3', 30),
      pt('C', MON, 'c1', 42),
    ],
  };
  const C = `day ${MON} by=partner:C @1`;
  const total = `day ${MON} by=none @1`;

  it('total - disclosed parts - own part = the withheld part', () => {
    const served = [
      cell('day', MON, 'none', null, 'ok'),
      cell('day', MON, 'partner', 'A', 'ok'),
      cell('day', MON, 'partner', 'B', 'ok'),
      cell('day', MON, 'partner', 'C', 'suppressed'),
    ];
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `${C} value`, 42);
    expect(coef(v, `${total} value`)).toBe(1);
    expect(coef(v, `day ${MON} by=partner:B @1 value`)).toBe(-1);
    expectDetermined(a, `${C} n`, 1);
    expect(a.report()).toContain(`${C} value: DETERMINED = 42`);
  });

  it("today's complementary suppression withholds the attacker's own cell, which does not help", () => {
    const served = serveToday(scenario, { grains: ['day'], bys: ['none', 'partner'], snapshots: [1] }, 3);
    const a = served.find((c) => c.group === 'A')!;
    expect([a.state, a.reason]).toEqual(['suppressed', 'complementary']);
    const v = expectDetermined(auditScenario(scenario, served, { attacker: 'A', k: 3 }), `${C} value`, 42);
    expect(v.witness!.known.length).toBeGreaterThan(0); // the attacker's own part stands in for its cell
  });

  it('withholding the complementary cell that is not the attacker\u2019s: not determined', () => {
    const served = [
      cell('day', MON, 'none', null, 'ok'),
      cell('day', MON, 'partner', 'A', 'ok'),
      cell('day', MON, 'partner', 'B', 'suppressed', { reason: 'complementary' }),
      cell('day', MON, 'partner', 'C', 'suppressed'),
    ];
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    expectHidden(a, `${C} value`);
    expectHidden(a, `${C} n`);
    expectHidden(a, `day ${MON} by=partner:B @1 value`);
    expect(a.leaks).toEqual([]);
    // With values in [0, 100]: C's sum is anywhere in [0, 102] (B + C = 102); with the leak it was a point.
    const wide = feasibleInterval(a.system, termsOf(verdict(a, `${C} value`).target));
    expect([wide.min?.toNumber(), wide.max?.toNumber()]).toEqual([0, 102]);
  });

  it('two partners, per-partner KPI: total - own = other, unless the total is withheld too', () => {
    const two: Scenario = { ...scenario, points: scenario.points.filter((p) => p.partner !== 'C') };
    const B = `day ${MON} by=partner:B @1`;
    const leaky = [
      cell('day', MON, 'none', null, 'ok'),
      cell('day', MON, 'partner', 'A', 'ok'),
      cell('day', MON, 'partner', 'B', 'suppressed'),
    ];
    const a = auditScenario(two, leaky, { attacker: 'A', k: 4 });
    const v = expectDetermined(a, `${B} value`, 60);
    expect(coef(v, `${total} value`)).toBe(1);
    const interval = feasibleInterval(a.system, termsOf(verdict(a, `${B} value`).target));
    expect([interval.min?.toNumber(), interval.max?.toNumber()]).toEqual([60, 60]);

    const safe = leaky.map((c) =>
      c.by === 'none' ? { ...c, state: 'suppressed' as const, reason: 'complementary' } : c,
    );
    const b = auditScenario(two, safe, { attacker: 'A', k: 4 });
    expectHidden(b, `${B} value`);
    expect(b.leaks).toEqual([]);
  });
});

describe('family 2: padding with fabricated own subjects', () => {
  const surface = { grains: ['day'] as Grain[], bys: ['none'], snapshots: [1] };
  // Suppress a cell unless every contributing partner's part has k subjects (the rule of #12).
  const perPartner = (k: number) => (_c: CellSpec, pts: Point[]) => {
    const parts = new Map<string, Set<string>>();
    for (const p of pts) parts.set(p.partner, (parts.get(p.partner) ?? new Set()).add(p.subject));
    return [...parts.values()].every((s) => s.size >= k) ? 'ok' : 'suppressed';
  };
  const padded = (measure: Measure, own: number[]): Scenario => ({
    measure,
    points: [...own.map((v, i) => pt('A', MON, `fake${i}`, v)), pt('B', MON, 'b1', 42)],
  });
  const part = `B's part of day ${MON} by=none @1`;

  it('the threshold counts the padding, so total - own = the other partner\u2019s single point', () => {
    const scenario = padded('sum', [0, 0]);
    const served = serveToday(scenario, surface, 3);
    expect(served.map((c) => c.state)).toEqual(['ok']);
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `${part} value`, 42);
    expect(coef(v, `day ${MON} by=none @1 value`)).toBe(1);
    expect(v.witness!.known.map((k) => k.coef.toNumber())).toEqual([-1]);
    expectDetermined(a, `${part} n`, 1);
  });

  it('judging every partner\u2019s part against k withholds it: not determined', () => {
    const scenario = padded('sum', [0, 0]);
    const a = auditScenario(scenario, serve(scenario, surface, perPartner(3)), { attacker: 'A', k: 3 });
    expectHidden(a, `${part} value`);
    expectHidden(a, `day ${MON} by=none @1 value`);
    expect(a.leaks).toEqual([]);
  });

  it('median: own values placed around the unknown one pin it', () => {
    const scenario = padded('p50', [0, 0, 100, 100]);
    const served = serveToday(scenario, surface, 3);
    const found = quantileFindings(scenario, served, { attacker: 'A', k: 3 });
    expect(found.find((f) => f.kind === 'pinned')).toMatchObject({ partner: 'B', value: Q.of(42) });
    expect(found.some((f) => f.kind === 'small-part')).toBe(true);
  });

  it('median: own values all on one side only bound it; withheld, nothing is found', () => {
    const scenario = padded('p50', [0, 0, 0, 0]);
    const found = quantileFindings(scenario, serveToday(scenario, surface, 3), { attacker: 'A', k: 3 });
    expect(found.filter((f) => f.kind !== 'small-part')).toEqual([
      { cell: `day ${MON} by=none @1`, partner: 'B', kind: 'interval', interval: { min: null, max: null } },
    ]);
    const around = padded('p90', [0, 0, 100, 100]);
    expect(quantileFindings(around, serve(around, surface, perPartner(3)), { attacker: 'A', k: 3 })).toEqual([]);
  });
});

describe('family 3: across grains', () => {
  const points = [
    pt('A', MON, 'a1', 1),
    pt('A', MON, 'a2', 2),
    pt('A', MON, 'a3', 3),
    pt('B', MON, 'b1', 10),
    pt('B', MON, 'b2', 20),
    pt('B', MON, 'b3', 30),
    pt('B', TUE, 'b4', 42),
  ];
  const surface = { grains: ['day', 'week', 'month'] as Grain[], bys: ['partner'], snapshots: [1] };
  const day2 = `day ${TUE} by=partner:B @1`;

  it('the week minus its disclosed day = the withheld day', () => {
    const scenario: Scenario = { measure: 'sum', points };
    const served = serveToday(scenario, surface, 3);
    expect(served.find((c) => cellLabel(c) === day2)?.state).toBe('suppressed');
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `${day2} value`, 42);
    expect(
      Math.abs(coef(v, `week ${MON} by=partner:B @1 value`) ?? coef(v, 'month 2026-01-01 by=partner:B @1 value')!),
    ).toBe(1);
    expect(coef(v, `day ${MON} by=partner:B @1 value`)).toBe(-1);
  });

  it('withholding the week and month too: not determined', () => {
    const scenario: Scenario = { measure: 'sum', points };
    const served = serveToday(scenario, surface, 3).map((c) =>
      c.group === 'B' && c.grain !== 'day' ? { ...c, state: 'suppressed' as const, reason: 'complementary' } : c,
    );
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    expectHidden(a, `${day2} value`);
    expect(a.leaks).toEqual([]);
  });

  it('avg through n: with one point per subject, value x n = sum, so the withheld day\u2019s average follows', () => {
    const scenario: Scenario = { measure: 'avg', points, pointsPerSubject: 'one' };
    const served = serveToday(scenario, surface, 3);
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `${day2} value`, 42);
    expect(v.witness!.observations.some((o) => o.id.endsWith(' n'))).toBe(true);
  });

  it('avg when n counts subjects that may have several points: n does not give the sum', () => {
    const scenario: Scenario = { measure: 'avg', points, pointsPerSubject: 'any' };
    const a = auditScenario(scenario, serveToday(scenario, surface, 3), { attacker: 'A', k: 3 });
    expectHidden(a, `${day2} value`);
  });
});

describe('family 4: across breakdowns', () => {
  const r = (region: string) => ({ dims: { region } });
  const scenario: Scenario = {
    measure: 'sum',
    points: [
      pt('A', MON, 'a1', 5, r('north')),
      pt('A', MON, 'a2', 6, r('south')),
      pt('A', MON, 'a3', 7, r('south')),
      pt('A', MON, 'a4', 1, r('east')),
      pt('A', MON, 'a5', 1, r('east')),
      pt('A', MON, 'a6', 1, r('east')),
      pt('B', MON, 'b1', 42, r('north')),
      pt('B', MON, 'b2', 10, r('south')),
      pt('B', MON, 'b3', 20, r('south')),
      pt('B', MON, 'b4', 30, r('south')),
    ],
  };
  const surface = { grains: ['day'] as Grain[], bys: ['partner', 'region'], snapshots: [1] };
  const north = `day ${MON} by=region:north @1`;

  it('by=partner and by=region of the same day, with own knowledge, give the withheld region', () => {
    // Today: north (2 subjects) is withheld; the complementary cell is east, which is all the attacker's.
    const served = serveToday(scenario, surface, 3);
    expect(served.filter((c) => c.state === 'suppressed').map((c) => c.group)).toEqual(['east', 'north']);
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `B's part of ${north} value`, 42);
    expect(coef(v, `day ${MON} by=partner:B @1 value`)).toBe(1);
    expect(coef(v, `day ${MON} by=region:south @1 value`)).toBe(-1);
    expect(v.witness!.known.length).toBeGreaterThan(0);
    expectDetermined(a, `${north} value`, 47);
  });

  it('withholding south instead of the attacker\u2019s own east: not determined', () => {
    const served = serveToday(scenario, surface, 3).map((c) =>
      c.group === 'east'
        ? { ...c, state: 'ok' as const, reason: undefined }
        : c.group === 'south'
          ? { ...c, state: 'suppressed' as const, reason: 'complementary' }
          : c,
    );
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    expectHidden(a, `${north} value`);
    expectHidden(a, `B's part of ${north} value`);
  });
});

describe('family 4: across two dimensions', () => {
  // One dimension's cell minus another's cuts out the cells of both at once: north minus app is
  // north∩web less south∩app, and with nothing by app in the south (granted: the model knows
  // which atoms exist), B's one subject by web in the north.
  const d = (region: string, channel: string) => ({ dims: { region, channel } });
  const scenario: Scenario = {
    measure: 'sum',
    points: [
      pt('A', MON, 'a1', 1, d('south', 'web')),
      pt('A', MON, 'a2', 1, d('south', 'web')),
      pt('A', MON, 'a3', 1, d('south', 'web')),
      pt('B', MON, 'b1', 6, d('north', 'app')),
      pt('B', MON, 'b2', 6, d('north', 'app')),
      pt('B', MON, 'b3', 6, d('north', 'app')),
      pt('B', MON, 'b1', 40, d('north', 'web')),
      pt('B', MON, 'b4', 2, d('south', 'web')),
      pt('B', MON, 'b5', 2, d('south', 'web')),
      pt('B', MON, 'b6', 2, d('south', 'web')),
    ],
  };
  const surface = { grains: ['day'] as Grain[], bys: ['region', 'channel'], snapshots: [1] };
  const target = `B's part of the day ${MON} channel=web region=north @1 value`;

  it("every cell of one dimension has k subjects, yet north − app is B's one subject by web in the north", () => {
    const served = serve(scenario, surface, () => 'ok');
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    const v = expectDetermined(a, target, 40);
    expect(coef(v, `day ${MON} by=region:north @1 value`)).toBe(1);
    expect(coef(v, `day ${MON} by=channel:app @1 value`)).toBe(-1);
  });

  it('withholding the cells that hold it (north and web): not determined', () => {
    const served = serve(scenario, surface, (c) => (c.group === 'north' || c.group === 'web' ? 'suppressed' : 'ok'));
    expectHidden(auditScenario(scenario, served, { attacker: 'A', k: 3 }), target);
  });
});

describe('family 5: across snapshots', () => {
  const scenario: Scenario = {
    measure: 'sum',
    points: [
      pt('A', MON, 'a1', 1),
      pt('A', MON, 'a2', 2),
      pt('A', MON, 'a3', 3),
      pt('B', MON, 'b1', 10),
      pt('B', MON, 'b2', 20),
      pt('B', MON, 'b3', 30),
      pt('B', MON, 'b4', 42, { snapshot: 2 }),
    ],
  };
  const at = (snapshot: number, state: 'ok' | 'suppressed') => cell('day', MON, 'none', null, state, { snapshot });
  const change = `B's change of day ${MON} by=none @2 since @1`;

  it('a late point changes a closed cell by exactly that point', () => {
    const a = auditScenario(scenario, [at(1, 'ok'), at(2, 'ok')], { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `${change} value`, 42);
    expect([coef(v, `day ${MON} by=none @2 value`), coef(v, `day ${MON} by=none @1 value`)]).toEqual([1, -1]);
    expectDetermined(a, `${change} n`, 1);
  });

  it('a change that does not pass the rules is not served: not determined', () => {
    const a = auditScenario(scenario, [at(1, 'ok'), at(2, 'suppressed')], { attacker: 'A', k: 3 });
    expectHidden(a, `${change} value`);
    expect(a.leaks).toEqual([]);
  });
});

describe('family 6: retention', () => {
  const scenario: Scenario = {
    measure: 'sum',
    points: [
      pt('A', TUE, 'a1', 1),
      pt('A', TUE, 'a2', 2),
      pt('A', TUE, 'a3', 3),
      pt('B', MON, 'b0', 42, { removedAt: 2 }),
      pt('B', TUE, 'b1', 10),
      pt('B', TUE, 'b2', 20),
      pt('B', TUE, 'b3', 30),
    ],
  };
  const monday = `day ${MON} by=none @1`;
  const week = (snapshot: number, state: 'ok' | 'suppressed') => cell('week', MON, 'none', null, state, { snapshot });

  it('deleting a day changes the week around it by that day', () => {
    const served = [cell('day', MON, 'none', null, 'suppressed'), week(1, 'ok'), week(2, 'ok')];
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `${monday} value`, 42);
    expect([coef(v, `week ${MON} by=none @1 value`), coef(v, `week ${MON} by=none @2 value`)]).toEqual([1, -1]);
    // The week's change is the day's (deduplicated: the same unknowns), minus the deleted point.
    expectDetermined(a, `B's change of day ${MON} by=none @2 since @1 value`, -42);
  });

  it('the week is not re-served after the deletion: not determined', () => {
    const served = [cell('day', MON, 'none', null, 'suppressed'), week(1, 'ok'), week(2, 'suppressed')];
    const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
    expectHidden(a, `${monday} value`);
    expect(a.leaks).toEqual([]);
  });
});

describe('family 7: metadata counts', () => {
  const scenario: Scenario = {
    measure: 'count',
    points: [pt('A', MON, 'a1', 1), pt('B', MON, 'b1', 1), pt('B', MON, 'b1', 1), pt('B', TUE, 'b2', 1)],
  };
  const B = `day ${MON} by=partner:B @1`;

  it('points per feed and day reveal a withheld count; per week they do not', () => {
    const withheld = cell('day', MON, 'partner', 'B', 'suppressed');
    const perDay = { ...withheld, state: 'ok' as const, reason: undefined, shows: { points: true } };
    const a = auditScenario(scenario, [withheld, perDay], { attacker: 'A', k: 3 });
    const v = expectDetermined(a, `${B} value`, 2);
    expect(coef(v, `${B} points`)).toBe(1);
    const perWeek = cell('week', MON, 'partner', 'B', 'ok', { shows: { points: true } });
    expectHidden(auditScenario(scenario, [withheld, perWeek], { attacker: 'A', k: 3 }), `${B} value`);
  });
});

// ---------------------------------------------------------------------------------------------------
// Properties

describe('rank test against a brute-force oracle (random 0/1 systems of up to 5 unknowns)', () => {
  // If t is not in the row space of a 0/1 matrix M with m columns, some integer null vector of M moves t,
  // with entries bounded by the largest determinant of an (m-1)x(m-1) 0/1 matrix (Cramer's rule):
  // 1, 1, 1, 2, 3 for m = 1..5. So searching that box decides determinability exactly.
  const BOX = [0, 1, 1, 1, 2, 3];
  it('determined iff no invisible integer change moves the target', () => {
    const seen = { determined: 0, hidden: 0 };
    const bits = fc.array(fc.boolean(), { minLength: 5, maxLength: 5 });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(bits, { maxLength: 6 }),
        bits,
        bits,
        fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 5, maxLength: 5 }),
        (m, rows, knownMask, targetMask, truth) => {
          const vars = Array.from({ length: m }, (_, i) => `x${i}`);
          const dot = (mask: boolean[], x: number[]) => vars.reduce((s, _, i) => s + (mask[i] ? x[i]! : 0), 0);
          const system: DisclosureSystem = {
            observations: rows.map((r, i) => ({
              id: `row${i}`,
              terms: vars.filter((_, j) => r[j]).map((atom) => ({ atom, quantity: 'S' as const })),
              value: dot(r, truth),
            })),
            known: vars.flatMap((atom, i) =>
              knownMask[i] ? [{ atom, quantity: 'S' as const, value: truth[i]! }] : [],
            ),
            targets: [
              {
                id: 't',
                kind: 'linear',
                terms: vars.filter((_, j) => targetMask[j]).map((atom) => ({ atom, quantity: 'S' as const })),
              },
            ],
          };
          const v = audit(system)[0]!;
          // Brute force over the unknowns' changes in the box.
          const free = vars.map((_, i) => i).filter((i) => !knownMask[i]);
          const box = BOX[m]!;
          let moved = false;
          const delta = new Array<number>(m).fill(0);
          const walk = (k: number): void => {
            if (moved) return;
            if (k === free.length) {
              if (rows.every((r) => dot(r, delta) === 0) && dot(targetMask, delta) !== 0) moved = true;
              return;
            }
            for (let x = -box; x <= box; x++) {
              delta[free[k]!] = x;
              walk(k + 1);
            }
            delta[free[k]!] = 0;
          };
          walk(0);
          expect(v.determined).toBe(!moved);
          seen[v.determined ? 'determined' : 'hidden']++;
          if (v.determined) {
            expect(checkWitness(system, system.targets[0]!, v)).toBeNull();
            expect(v.value!.toNumber()).toBe(dot(targetMask, truth));
          } else expect(checkDirection(system, system.targets[0]!, v)).toBeNull();
        },
      ),
      { numRuns: 300, seed: 20261130 },
    );
    expect(seen.determined).toBeGreaterThan(20);
    expect(seen.hidden).toBeGreaterThan(20);
  });
});

const BASE = '2026-01-26'; // a Monday; with up to 10 days the data crosses a week and a month boundary

interface Generated {
  scenario: Scenario;
  surface: { grains: Grain[]; bys: string[]; snapshots: number[] };
  served: ServedCell[];
}

const generated = (measure: Measure, maxPoints = 12): fc.Arbitrary<Generated> =>
  fc
    .record({
      partners: fc.integer({ min: 2, max: 4 }),
      start: fc.integer({ min: 0, max: 6 }),
      days: fc.integer({ min: 1, max: 4 }),
      snapshots: fc.integer({ min: 1, max: 3 }),
      mode: fc.constantFrom('any' as const, 'onePerDay' as const, 'one' as const),
      raw: fc.array(
        fc.record({
          p: fc.nat(3),
          d: fc.nat(3),
          region: fc.constantFrom('north', 'south'),
          s: fc.nat(3),
          v: fc.integer({ min: 0, max: 9 }),
          at: fc.nat(2),
        }),
        { minLength: 1, maxLength: maxPoints },
      ),
      retention: fc.option(fc.record({ at: fc.integer({ min: 2, max: 3 }), horizon: fc.integer({ min: 1, max: 3 }) }), {
        nil: undefined,
      }),
      grains: fc.subarray(['day', 'week', 'month'] as Grain[], { minLength: 1 }),
      bys: fc.subarray(['none', 'partner', 'region'], { minLength: 1 }),
      mask: fc.array(fc.boolean(), { minLength: 32, maxLength: 32 }),
    })
    .map((g): Generated => {
      const partners = ['A', 'B', 'C', 'D'].slice(0, g.partners);
      const seen = new Set<string>();
      const points: Point[] = [];
      g.raw.forEach((r, i) => {
        const partner = partners[r.p % g.partners]!;
        const d = r.d % g.days;
        const day = addDays(BASE, g.start + d);
        const subject = g.mode === 'one' ? `u${i}` : `s${r.s}`;
        const key = `${partner}|${subject}|${day}`;
        if (g.mode === 'onePerDay' && seen.has(key)) return;
        seen.add(key);
        const snapshot = (r.at % g.snapshots) + 1;
        const p: Point = {
          partner,
          day,
          subject,
          value: measure === 'rate' ? r.v % 2 : r.v / 2,
          snapshot,
          dims: { region: r.region },
        };
        const ret = g.retention;
        if (ret && ret.at <= g.snapshots && d < ret.horizon) {
          if (snapshot >= ret.at) return; // days behind the horizon take no late points
          p.removedAt = ret.at;
        }
        points.push(p);
      });
      const scenario: Scenario = { measure, points, pointsPerSubject: g.mode };
      const surface = {
        grains: g.grains,
        bys: g.bys,
        snapshots: Array.from({ length: g.snapshots }, (_, i) => i + 1),
      };
      // Withheld cells say why, truthfully: 'small' (a bound for the interval) only below k = 3.
      const served = readableCells(scenario, surface).map((c, i): ServedCell => {
        if (g.mask[i % 32]) return { ...c, state: 'ok' };
        const n = new Set(pointsIn(scenario, c).map((p) => `${p.partner}\u0000${p.subject}`)).size;
        return { ...c, state: 'suppressed', reason: n < 3 ? 'small' : 'complementary' };
      });
      return { scenario, surface, served };
    });

/** The target's value computed from the points alone (not from the builder's variables). */
function independentValue(scenario: Scenario, target: Target): Q | undefined {
  const about = target.about;
  if (!about?.cell) return undefined;
  const { cell } = about;
  const part = (snapshot: number) =>
    pointsIn(scenario, { ...cell, snapshot }).filter((p) => about.partner === undefined || p.partner === about.partner);
  const of = (pts: Point[]) =>
    about.field === 'n'
      ? Q.of(new Set(pts.map((p) => `${p.partner}\u0000${p.subject}`)).size)
      : measureValue(scenario.measure, pts);
  if (about.change) {
    const [before, after] = about.change;
    const additive = scenario.measure === 'sum' || scenario.measure === 'count' || scenario.measure === 'distinct';
    if (about.field === 'value' && !additive) return undefined;
    return of(part(after)).sub(of(part(before)));
  }
  return of(part(cell.snapshot));
}

describe('scenarios: every verdict carries a certificate that checks out, for every measure', () => {
  it.each(MEASURES.map((m) => [m]))('%s', (measure) => {
    const seen = { determined: 0, hidden: 0, independent: 0, pinned: 0 };
    fc.assert(
      fc.property(generated(measure), ({ scenario, served }) => {
        const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
        // The builder's disclosed numbers are the cells' values, computed independently.
        for (const c of served) {
          if (c.state !== 'ok') continue;
          const pts = pointsIn(scenario, c);
          const n = a.system.observations.find((o) => o.id === `${cellLabel(c)} n`)!;
          expect(Q.of(n.value).toNumber()).toBe(new Set(pts.map((p) => `${p.partner}\u0000${p.subject}`)).size);
          const v = a.system.observations.find((o) => o.id === `${cellLabel(c)} value`);
          if (measure === 'sum' || measure === 'count' || measure === 'distinct')
            expect(Q.of(v!.value).eq(measureValue(measure, pts))).toBe(true);
        }
        a.verdicts.forEach((v, i) => {
          const t = a.system.targets[i]!;
          if (v.determined) {
            expect(checkWitness(a.system, t, v), explain(v)).toBeNull();
            seen.determined++;
            const truth = t.kind === 'linear' ? Q.of(t.truth!) : Q.of(t.truth!.num).div(Q.of(t.truth!.den));
            expect(v.value!.eq(truth), explain(v)).toBe(true);
            const independent = independentValue(scenario, t);
            if (independent) expect(v.value!.eq(independent), explain(v)).toBe(true);
            if (independent) seen.independent++;
          } else {
            expect(checkDirection(a.system, t, v), explain(v)).toBeNull();
            seen.hidden++;
          }
        });
        // Quantiles: a pinned point is the foreign point; an interval holds it.
        for (const f of a.quantile) {
          if (f.kind === 'small-part') continue;
          const c = served.find((s) => cellLabel(s) === f.cell)!;
          const x = Q.of(pointsIn(scenario, c).find((p) => p.partner !== 'A')!.value);
          if (f.kind === 'pinned') expect(f.value!.eq(x)).toBe(true);
          if (f.kind === 'pinned') seen.pinned++;
          expect(f.interval!.min === null || f.interval!.min.cmp(x) <= 0).toBe(true);
          expect(f.interval!.max === null || f.interval!.max.cmp(x) >= 0).toBe(true);
        }
      }),
      { numRuns: 40, seed: 20261130 },
    );
    expect(seen.determined).toBeGreaterThan(0);
    expect(seen.hidden).toBeGreaterThan(0);
    expect(seen.independent).toBeGreaterThan(0);
    // Random disclosure under no rule pins single foreign points in quantile cells.
    if (measure.startsWith('p')) expect(seen.pinned).toBeGreaterThan(0);
  });
});

describe('scenarios (sum): an undetermined target has a second dataset the attacker cannot tell apart', () => {
  it('moving foreign values along the direction changes the target and nothing served', () => {
    let realised = 0;
    fc.assert(
      fc.property(generated('sum'), ({ scenario, served }) => {
        const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
        const fingerprint = (s: Scenario) =>
          served.map((c) => {
            const pts = pointsIn(s, c);
            const n = new Set(pts.map((p) => `${p.partner}\u0000${p.subject}`)).size;
            return c.state === 'ok' ? `${measureValue('sum', pts)}|${n}` : '-';
          });
        const seen = fingerprint(scenario);
        a.verdicts.forEach((v, i) => {
          const t = a.system.targets[i]!;
          if (v.determined || t.kind !== 'linear' || t.about?.field !== 'value') return;
          const d = integerDirection(v.direction!);
          // A sum target only moves sums: realise the change on the first point of each atom.
          const points = scenario.points.map((p) => ({ ...p }));
          for (const [key, by] of d) {
            expect(key.startsWith('S:')).toBe(true);
            const first = a.system.atoms.get(key.slice(2))!.points[0]!;
            const j = scenario.points.indexOf(first);
            points[j] = { ...points[j]!, value: points[j]!.value + Number(by) };
            expect(first.partner).not.toBe('A');
          }
          const other: Scenario = { ...scenario, points };
          realised++;
          expect(fingerprint(other)).toEqual(seen);
          const before = independentValue(scenario, t);
          const after = independentValue(other, t);
          if (before && after) expect(after.eq(before)).toBe(false);
        });
      }),
      { numRuns: 60, seed: 20261130 },
    );
    expect(realised).toBeGreaterThan(20);
  });
});

describe('scenarios: disclosing more never hides what was determined', () => {
  it('serving one more withheld cell keeps every determined target determined', () => {
    let compared = 0;
    fc.assert(
      fc.property(generated('sum'), fc.nat(), ({ scenario, served }, pick) => {
        const withheld = served.map((c, i) => (c.state === 'suppressed' ? i : -1)).filter((i) => i >= 0);
        fc.pre(withheld.length > 0);
        const j = withheld[pick % withheld.length]!;
        const more = served.map((c, i) => (i === j ? { ...c, state: 'ok' as const, reason: undefined } : c));
        const a = auditScenario(scenario, served, { attacker: 'A', k: 3 });
        const b = auditScenario(scenario, more, { attacker: 'A', k: 3 });
        const after = new Map(b.verdicts.map((v) => [v.target, v.determined]));
        for (const v of a.verdicts)
          if (v.determined && after.has(v.target)) {
            expect(after.get(v.target)).toBe(true);
            compared++;
          }
      }),
      { numRuns: 60, seed: 20261130 },
    );
    expect(compared).toBeGreaterThan(10);
  });
});

describe('scenarios: feasible interval of the linear relaxation', () => {
  it('holds the truth, and is a single point when the rank test says determined', () => {
    const seen = { point: 0, wide: 0 };
    fc.assert(
      fc.property(
        fc.constantFrom<Measure>('sum', 'count').chain((m) => generated(m, 6)),
        ({ scenario, served }) => {
          const s: Scenario = { ...scenario, range: [0, 4.5] };
          const a = auditScenario(s, served, { attacker: 'A', k: 3 });
          a.verdicts.slice(0, 8).forEach((v, i) => {
            const t = a.system.targets[i]!;
            if (t.kind !== 'linear') return;
            const { min, max } = feasibleInterval(a.system, t.terms);
            const truth = Q.of(t.truth!);
            expect(min === null || min.cmp(truth) <= 0, explain(v)).toBe(true);
            expect(max === null || max.cmp(truth) >= 0, explain(v)).toBe(true);
            if (v.determined) expect(min?.eq(truth) && max?.eq(truth)).toBe(true);
            seen[min !== null && max !== null && min.eq(max) ? 'point' : 'wide']++;
          });
        },
      ),
      { numRuns: 25, seed: 20261130 },
    );
    expect(seen.point).toBeGreaterThan(0);
    expect(seen.wide).toBeGreaterThan(0);
  });
});

describe('quantile preimage against brute force', () => {
  it('quantile(own + [y]) equals the disclosed value exactly when y is in the preimage', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 7 }),
        fc.integer({ min: 0, max: 10 }),
        fc.constantFrom('p50' as const, 'p90' as const, 'p95' as const),
        (own, x, p) => {
          const q = QUANTILE[p];
          const ownQ = own.map((v) => Q.of(v));
          const disclosed = quantileOf([...ownQ, Q.of(x)], q);
          const interval = quantilePreimage(ownQ, q, disclosed)!;
          const inside = (y: Q) =>
            (interval.min === null || interval.min.cmp(y) <= 0) && (interval.max === null || interval.max.cmp(y) >= 0);
          expect(inside(Q.of(x))).toBe(true);
          for (let k = -4; k <= 24; k++) {
            const y = Q.make(BigInt(k), 2n);
            expect(quantileOf([...ownQ, y], q).eq(disclosed), `y = ${y}`).toBe(inside(y));
          }
        },
      ),
      { numRuns: 300, seed: 20261130 },
    );
  });
});
