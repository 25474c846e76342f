// The leak families of issue #12, each through the public HTTP API with an agreement of its own.
// Each test builds the data with which a partner recovered another partner's withheld figure
// before the disclosure rules (its comment says how), reads what the partner can read, checks
// that the arithmetic no longer works, and hands everything read to the independent auditor
// (tests/helpers/disclosure-auditor.ts), which proves that no protected figure is determined.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import YAML from 'yaml';
import { runRetention } from '../../services/governance/retention.js';
import { DOMINANCE_VERDICTS } from '../../services/query/aggregate-compiler.js';
import {
  audit,
  buildSystem,
  explain,
  pointsIn,
  quantileFindings,
  type Grain,
  type Measure,
  type Point,
  type Scenario,
  type ServedCell,
  type Target,
} from '../helpers/disclosure-auditor.js';
import { ndjson, type TestPoint } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import type { DuckStore } from '../../services/platform/duck-store.js';
import { timeout } from '../helpers/timeouts.js';

interface KpiDef {
  id: string;
  measure: Measure;
  grains: Grain[];
  dims?: string[];
  /** A dimension's agreed values (north, south unless given). */
  values?: Record<string, string[]>;
  breakdown?: 'per_partner' | 'combined';
  counts?: 'exact' | 'none';
  dominance?: number;
  band?: string;
  evaluate?: string;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** An agreement of the test's own: UTC, k from the defaults, every KPI readable by the partnership. */
function agreementFile(partners: string[], k: number, kpis: KpiDef[], extra = ''): string {
  const yaml = [
    'partnership: { id: families, title: Families, timezone: UTC }',
    'partners:',
    ...partners.map((p) => `  - { id: ${p}, name: Partner ${p} }`),
    `defaults: { minGroupSize: ${k} }`,
    'steering:',
    '  - { name: Chair, email: chair@example.org }',
    extra,
    'kpis:',
    ...kpis.flatMap((x) => [
      `  - id: ${x.id}`,
      `    title: ${x.id}`,
      '    unit: u',
      '    subject: thing',
      `    measure: ${x.measure}`,
      `    grains: [${x.grains.join(', ')}]`,
      ...(x.dims
        ? [
            `    dimensions: { ${x.dims.map((d) => `${d}: [${(x.values?.[d] ?? ['north', 'south']).join(', ')}]`).join(', ')} }`,
          ]
        : []),
      '    disclosure: partnership',
      `    breakdown: ${x.breakdown ?? 'per_partner'}`,
      `    counts: ${x.counts ?? 'none'}`,
      ...(x.dominance ? [`    dominance: ${x.dominance}`] : []),
      `    band: ${x.band ?? '{ lower: 0 }'}`,
      `    evaluate: ${x.evaluate ?? `{ grain: ${x.grains[0]} }`}`,
      '    freshness: { every: P1D, grace: PT6H }',
      '    owners:',
      `      ${partners[0]}: { name: Owner, email: owner@example.org }`,
      '    escalation: { ackWithin: P2D }',
    ]),
  ].join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'parity-families-'));
  dirs.push(dir);
  const file = join(dir, 'agreement.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** The combined cell of 2026-11-16 of a KPI's day series as `partner` reads it, at a snapshot or the latest. */
async function dayCell(f: Family, kpi: string, partner: string, snapshot?: number) {
  const at = snapshot ? `&snapshot=${snapshot}` : '';
  return cellOf(
    await f.get(`/v1/kpis/${kpi}/series?grain=day&from=2026-11-16&to=2026-11-16${at}`, partner),
    '2026-11-16',
    null,
  );
}

/**
 * Lands `first` with its release step held at a gate, lands `during` while the step waits (each
 * committed, so they are settled together by the step after it), then lets it go. Returns the
 * snapshots of `first` and of `during` (in the order given) and every step's snapshot and KPIs.
 */
async function landAroundHeldStep(duck: DuckStore, first: () => Promise<number>, during: (() => Promise<number>)[]) {
  const real = duck.releaser;
  const steps: { snapshot: number; kpis: readonly string[] }[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const landed = vi.spyOn(duck, 'landed');
  duck.releaser = async (exec, snapshot, kpis) => {
    steps.push({ snapshot, kpis });
    if (steps.length === 1) await gate;
    return real(exec, snapshot, kpis);
  };
  const pushes: Promise<number>[] = [];
  try {
    pushes.push(first());
    await vi.waitFor(() => expect(steps).toHaveLength(1), { timeout: timeout(10_000) });
    pushes.push(...during.map((land) => land()));
    await vi.waitFor(() => expect(landed).toHaveBeenCalledTimes(1 + during.length), { timeout: timeout(10_000) });
    expect(steps).toHaveLength(1);
    open();
    const [held, ...rest] = await Promise.all(pushes);
    return { first: held!, during: rest, steps };
  } finally {
    // Never left shut (a failed wait would hold the step, its transaction and the pushes forever).
    open();
    duck.releaser = real;
    landed.mockRestore();
    await Promise.allSettled(pushes);
  }
}

/** A room of the family's own, and the points each partner pushed (the auditor's scenario). */
class Family {
  t!: TestRoom;
  readonly pushed = new Map<string, Point[]>();
  /** The points pushed to one KPI, by every partner. */
  points(kpi: string): Point[] {
    return this.pushed.get(kpi) ?? [];
  }
  static async start(file: string, env: Record<string, string> = {}): Promise<Family> {
    const f = new Family();
    f.t = await startTestRoom({ agreementFile: file, env: { PARITY_ALERTS: 'off', ...env } });
    return f;
  }
  /** n points of one partner on one day: subjects `${tag}-0…`, values from `value(i)`. */
  async push(
    partner: string,
    kpi: string,
    rows: { day: string; subjects: number; value: (i: number) => number; tag: string; dims?: Record<string, string> }[],
  ): Promise<number> {
    const pts: TestPoint[] = rows.flatMap((r) =>
      Array.from({ length: r.subjects }, (_, i) => ({
        kpi,
        at: `${r.day}T${String(8 + (i % 10)).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00Z`,
        value: r.value(i),
        subject: `${r.tag}-${i}`,
        ...(r.dims ? { dims: r.dims } : {}),
      })),
    );
    const res = await fetch(`${this.t.url}/v1/points`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await this.t.token(partner, 'ingest')}`,
        'content-type': 'application/x-ndjson',
      },
      body: ndjson(pts),
    });
    const receipt = (await res.json()) as { snapshot: number; accepted: number };
    expect(res.status, JSON.stringify(receipt)).toBe(202);
    expect(receipt.accepted).toBe(pts.length);
    const list = this.pushed.get(kpi) ?? [];
    this.pushed.set(kpi, list);
    for (const p of pts)
      list.push({
        partner,
        day: p.at.slice(0, 10),
        subject: p.subject,
        value: p.value,
        snapshot: receipt.snapshot,
        ...(p.dims ? { dims: p.dims } : {}),
      });
    return receipt.snapshot;
  }
  async get<T = Series>(path: string, partner: string | null, role: Parameters<TestRoom['token']>[1] = 'analyst') {
    const res = await fetch(`${this.t.url}${path}`, {
      headers: { authorization: `Bearer ${await this.t.token(partner, role)}` },
    });
    expect(res.status, path).toBe(200);
    return (await res.json()) as T;
  }
  /** Every cell of a KPI the partner can read at every grain and breakdown, as the auditor takes them. */
  async readAll(partner: string, kpi: KpiDef, from: string, to: string, snapshot?: number): Promise<ServedCell[]> {
    const out: ServedCell[] = [];
    const bys = ['none', ...(kpi.breakdown === 'combined' ? [] : ['partner']), ...(kpi.dims ?? [])];
    for (const grain of kpi.grains)
      for (const by of bys) {
        const s = await this.get(
          `/v1/kpis/${kpi.id}/series?grain=${grain}&by=${by}&from=${from}&to=${to}${snapshot ? `&snapshot=${snapshot}` : ''}`,
          partner,
        );
        for (const c of s.cells)
          out.push({
            grain,
            period: c.period,
            by,
            group: c.group,
            snapshot: s.snapshot,
            state: c.state,
            ...(c.reasonCode ? { reason: c.reasonCode } : {}),
            // A held cell shows a value too: its released points' (the auditor takes them from Point.released).
            shows: c.state !== 'suppressed' ? { value: true, n: c.n !== null } : {},
          });
      }
    return out;
  }
  /** A new version from `file`, proposed by one partner's admin and approved by each other one's. */
  async amend(file: string, proposer: string, ...approvers: string[]) {
    const post = async (path: string, partner: string, body: unknown) => {
      const res = await fetch(`${this.t.url}${path}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await this.t.token(partner, 'admin')}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify(body),
      });
      return (await res.json()) as { id: string; state: string };
    };
    const made = await post('/v1/agreement/proposals', proposer, {
      document: YAML.parse(readFileSync(file, 'utf8')),
      reason: 'a new version',
    });
    expect(made.id, JSON.stringify(made)).toBeTypeOf('string');
    let last = made;
    for (const approver of approvers) last = await post(`/v1/agreement/proposals/${made.id}/approve`, approver, {});
    expect(last).toMatchObject({ state: 'active' });
  }
  close() {
    return this.t.close();
  }
}

interface Series {
  snapshot: number;
  dominance?: number | null;
  cells: {
    period: string;
    group: string | null;
    value: number | null;
    n: number | null;
    state: 'ok' | 'suppressed' | 'held';
    reasonCode?: string;
    reason?: string;
    asOf?: number;
  }[];
}

const cellOf = (s: Series, period: string, group: string | null) =>
  s.cells.find((c) => c.period === period && c.group === group);

/**
 * The auditor's verdict for one attacker: every foreign part below k, and every withheld cell whose
 * foreign content fails the rules, must be undetermined; no disclosed quantile cell may pin or hold a
 * small foreign part. Returns the explanations of what leaked (empty when nothing did).
 */
function leaks(
  measure: Measure,
  points: Point[],
  served: ServedCell[],
  attacker: string,
  k: number,
  over: { changes?: boolean; everyPartnerPart?: boolean } = {},
): string[] {
  const scenario: Scenario = { measure, points, ...(measure === 'rate' ? { range: [0, 1] as const } : {}) };
  const system = buildSystem(scenario, served, {
    attacker,
    k,
    targets: { changes: over.changes ?? false, everyPartnerPart: over.everyPartnerPart ?? false },
  });
  const targets = system.targets.filter((t: Target) => {
    const cell = t.about?.cell;
    if (!cell || t.about?.partner !== undefined) return true;
    const parts = new Map<string, Set<string>>();
    for (const p of pointsIn(scenario, cell)) parts.set(p.partner, (parts.get(p.partner) ?? new Set()).add(p.subject));
    return [...parts].some(([partner, s]) => partner !== attacker && s.size < k);
  });
  expect(targets.length, 'the auditor has protected figures to try').toBeGreaterThan(0);
  return [
    ...audit({ ...system, targets })
      .filter((v) => v.determined)
      .map(explain),
    ...quantileFindings(scenario, served, { attacker, k })
      .filter((f) => f.kind !== 'interval')
      .map((f) => `${f.cell}: ${f.kind} (${f.partner})`),
  ];
}

describe('family 1 — own knowledge: total − disclosed parts − own part', () => {
  const kpi: KpiDef = { id: 'parcels', measure: 'sum', grains: ['day'] };
  it('three partners: the total holding a small part is withheld, so nothing is left to subtract', async () => {
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi]));
    try {
      await f.push('a', 'parcels', [{ day: '2026-11-10', subjects: 5, value: () => 10, tag: 'A' }]);
      await f.push('b', 'parcels', [{ day: '2026-11-10', subjects: 5, value: () => 20, tag: 'B' }]);
      await f.push('c', 'parcels', [{ day: '2026-11-10', subjects: 1, value: () => 7, tag: 'C' }]);
      // Before: the total (11 subjects) was shown, c's cell withheld with one complementary cell —
      // a's or b's, which its owner knows — so a computed 157 − 50 − 100 = 7.
      const total = await f.get('/v1/kpis/parcels/series?grain=day&from=2026-11-10&to=2026-11-10', 'a');
      const parts = await f.get('/v1/kpis/parcels/series?grain=day&by=partner&from=2026-11-10&to=2026-11-10', 'a');
      expect(cellOf(total, '2026-11-10', null)).toMatchObject({ value: null, reasonCode: 'few_subjects' });
      expect(cellOf(parts, '2026-11-10', 'c')).toMatchObject({ value: null, reasonCode: 'few_subjects' });
      // a's and b's own cells stay disclosed: they hold no small part and nothing can be subtracted from them.
      expect(cellOf(parts, '2026-11-10', 'a')?.value).toBe(50);
      expect(cellOf(parts, '2026-11-10', 'b')?.value).toBe(100);
      for (const attacker of ['a', 'b'])
        expect(
          leaks('sum', f.points(kpi.id), await f.readAll(attacker, kpi, '2026-11-10', '2026-11-10'), attacker, 3),
        ).toEqual([]);
    } finally {
      await f.close();
    }
  });

  it('two partners: total − own = other is closed by withholding a total that holds the other one small part', async () => {
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
    try {
      await f.push('a', 'parcels', [{ day: '2026-11-10', subjects: 6, value: () => 10, tag: 'A' }]);
      await f.push('b', 'parcels', [{ day: '2026-11-10', subjects: 2, value: (i) => 30 + i, tag: 'B' }]);
      const total = await f.get('/v1/kpis/parcels/series?grain=day&from=2026-11-10&to=2026-11-10', 'a');
      expect(cellOf(total, '2026-11-10', null)?.value).toBeNull();
      expect(leaks('sum', f.points(kpi.id), await f.readAll('a', kpi, '2026-11-10', '2026-11-10'), 'a', 3)).toEqual([]);
    } finally {
      await f.close();
    }
  });
});

describe('family 2 — padding: own subjects lift a cell over the threshold', () => {
  it('a sum: k − 1 fabricated subjects no longer disclose the other partner’s single point', async () => {
    const kpi: KpiDef = { id: 'spend', measure: 'sum', grains: ['day'], breakdown: 'combined' };
    const f = await Family.start(agreementFile(['a', 'b'], 5, [kpi], 'twoPartyConsent: true'));
    try {
      await f.push('b', 'spend', [{ day: '2026-11-12', subjects: 1, value: () => 42, tag: 'B' }]);
      // Before: 4 + 1 = 5 distinct subjects passed k = 5 and a read 4·1 + 42 − 4 = 42.
      await f.push('a', 'spend', [{ day: '2026-11-12', subjects: 4, value: () => 1, tag: 'FAKE' }]);
      const s = await f.get('/v1/kpis/spend/series?grain=day&from=2026-11-12&to=2026-11-12', 'a');
      expect(cellOf(s, '2026-11-12', null)).toMatchObject({ value: null, reasonCode: 'few_subjects' });
      expect(leaks('sum', f.points(kpi.id), await f.readAll('a', kpi, '2026-11-12', '2026-11-12'), 'a', 5)).toEqual([]);
    } finally {
      await f.close();
    }
  });

  it('a median: own values placed around the other partner’s one value no longer pin it', async () => {
    const kpi: KpiDef = { id: 'wait', measure: 'p50', grains: ['day'], breakdown: 'combined' };
    const f = await Family.start(agreementFile(['a', 'b'], 5, [kpi], 'twoPartyConsent: true'));
    try {
      await f.push('b', 'wait', [{ day: '2026-11-12', subjects: 1, value: () => 42, tag: 'B' }]);
      // Before: two values far below, two far above: the median of five was b's 42.
      await f.push('a', 'wait', [{ day: '2026-11-12', subjects: 4, value: (i) => (i < 2 ? 0 : 1000), tag: 'FAKE' }]);
      const s = await f.get('/v1/kpis/wait/series?grain=day&from=2026-11-12&to=2026-11-12', 'a');
      expect(cellOf(s, '2026-11-12', null)).toMatchObject({ value: null, reasonCode: 'few_subjects' });
      expect(leaks('p50', f.points(kpi.id), await f.readAll('a', kpi, '2026-11-12', '2026-11-12'), 'a', 5)).toEqual([]);
    } finally {
      await f.close();
    }
  });
});

describe('family 3 — across grains: a week minus its disclosed days', () => {
  it('a count, and an average through n: the week holding a withheld day is withheld too', async () => {
    const orders: KpiDef = { id: 'orders', measure: 'count', grains: ['day', 'week'] };
    const score: KpiDef = { id: 'score', measure: 'avg', grains: ['day', 'week'], counts: 'exact' };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [orders, score]));
    try {
      const week = Array.from({ length: 7 }, (_, i) => `2026-11-${String(9 + i).padStart(2, '0')}`); // Mon 9th … Sun 15th
      for (const kpi of ['orders', 'score']) {
        await f.push(
          'a',
          kpi,
          week.map((day) => ({ day, subjects: 4, value: () => 5, tag: `A${day}` })),
        );
        // b: 4 subjects a day, but one on Sunday (value 9).
        await f.push(
          'b',
          kpi,
          week.map((day, i) => ({ day, subjects: i === 6 ? 1 : 4, value: () => (i === 6 ? 9 : 6), tag: `B${day}` })),
        );
      }
      // Before: b's week (25 points) and b's six other days were disclosed: 25 − 24 = b's Sunday;
      // for the average, week value × n − Σ day value × n = Sunday's sum.
      for (const kpi of [orders, score]) {
        const byPartner = await f.get(
          `/v1/kpis/${kpi.id}/series?grain=week&by=partner&from=2026-11-09&to=2026-11-15`,
          'a',
        );
        expect(cellOf(byPartner, '2026-11-09', 'b')).toMatchObject({ value: null, reasonCode: 'protects' });
        expect(cellOf(byPartner, '2026-11-09', 'a')?.value).not.toBeNull();
        expect(
          leaks(kpi.measure, f.points(kpi.id), await f.readAll('a', kpi, '2026-11-09', '2026-11-15'), 'a', 3),
        ).toEqual([]);
      }
    } finally {
      await f.close();
    }
  });
});

describe('family 3 — across grains that do not nest: a month minus its whole weeks', () => {
  it('weeks and months without days: the week and the month holding a slice with a small part are withheld', async () => {
    const spend: KpiDef = { id: 'spend', measure: 'sum', grains: ['week', 'month'], dims: ['region'] };
    const score: KpiDef = { id: 'score', measure: 'avg', grains: ['week', 'month'], dims: ['region'], counts: 'exact' };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [spend, score]));
    try {
      // Three subjects a partner on a day of each week from 5 October to 9 November (Sunday 1
      // November lies in the week of 26 October); b also has one point on Tuesday 27 October, in
      // the days that week shares with October.
      const days = ['2026-10-05', '2026-10-12', '2026-10-19', '2026-11-01', '2026-11-02', '2026-11-09'];
      for (const kpi of ['spend', 'score'])
        for (const partner of ['a', 'b', 'c'])
          await f.push(partner, kpi, [
            ...days.map((day) => ({
              day,
              subjects: 3,
              value: (i: number) => 5 + i,
              tag: `${partner}${day}`,
              dims: { region: 'north' },
            })),
            // In the same batch: no late point for the release step to hold.
            ...(partner === 'b'
              ? [{ day: '2026-10-27', subjects: 1, value: () => 42, tag: 'b-one', dims: { region: 'north' } }]
              : []),
          ]);
      // Before: b's October (60) minus its three whole weeks (18 each) was that one point, 42; by
      // region, and for the average through n, the same.
      for (const kpi of [spend, score]) {
        const months = await f.get(
          `/v1/kpis/${kpi.id}/series?grain=month&by=partner&from=2026-10-01&to=2026-11-30`,
          'a',
        );
        expect(cellOf(months, '2026-10-01', 'b')).toMatchObject({ value: null, reasonCode: 'protects' });
        expect(cellOf(months, '2026-10-01', 'a')?.value).not.toBeNull();
        const weeks = await f.get(`/v1/kpis/${kpi.id}/series?grain=week&by=partner&from=2026-10-05&to=2026-11-15`, 'a');
        expect(cellOf(weeks, '2026-10-26', 'b')).toMatchObject({ value: null, reasonCode: 'protects' });
        expect(cellOf(weeks, '2026-10-19', 'b')?.value).not.toBeNull();
        expect(
          leaks(kpi.measure, f.points(kpi.id), await f.readAll('a', kpi, '2026-09-28', '2026-11-30'), 'a', 3),
        ).toEqual([]);
      }
    } finally {
      await f.close();
    }
  });
});

describe('family 4 — across breakdowns: by partner and by a dimension of the same day, with own data', () => {
  it('the region part holding a small part is withheld, and so is every cell that holds that part', async () => {
    const kpi: KpiDef = { id: 'volume', measure: 'sum', grains: ['day'], dims: ['region'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
    try {
      const day = '2026-11-11';
      await f.push('a', 'volume', [
        { day, subjects: 4, value: () => 1, tag: 'AN', dims: { region: 'north' } },
        { day, subjects: 4, value: () => 2, tag: 'AS', dims: { region: 'south' } },
      ]);
      await f.push('b', 'volume', [
        { day, subjects: 4, value: () => 3, tag: 'BN', dims: { region: 'north' } },
        { day, subjects: 1, value: () => 50, tag: 'BS', dims: { region: 'south' } },
      ]);
      // Before: south (5 subjects) was disclosed: 58 − a's own 8 = b's single 50; and b's day
      // (5 subjects) minus b's north (north − a's north) gave it too.
      const region = await f.get(`/v1/kpis/volume/series?grain=day&by=region&from=${day}&to=${day}`, 'a');
      const partner = await f.get(`/v1/kpis/volume/series?grain=day&by=partner&from=${day}&to=${day}`, 'a');
      expect(cellOf(region, day, 'south')).toMatchObject({ value: null, reasonCode: 'few_subjects' });
      expect(cellOf(partner, day, 'b')).toMatchObject({ value: null, reasonCode: 'protects' });
      expect(cellOf(region, day, 'north')?.value).toBe(16);
      expect(leaks('sum', f.points('volume'), await f.readAll('a', kpi, day, day), 'a', 3)).toEqual([]);
    } finally {
      await f.close();
    }
  });
});

describe('dominance — one partner’s share of a sum', () => {
  it('a day one partner dominates is withheld, and the week holding its part shows the rest only', async () => {
    const kpi: KpiDef = { id: 'spend', measure: 'sum', grains: ['day', 'week'], breakdown: 'combined', dominance: 60 };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi]));
    try {
      const [d1, d2] = ['2026-11-09', '2026-11-10'];
      await f.push('a', 'spend', [
        { day: d1, subjects: 5, value: () => 10, tag: 'A1' },
        { day: d2, subjects: 5, value: () => 300, tag: 'A2' },
      ]);
      await f.push('b', 'spend', [
        { day: d1, subjects: 5, value: () => 10, tag: 'B1' },
        { day: d2, subjects: 5, value: () => 300, tag: 'B2' },
      ]);
      await f.push('c', 'spend', [
        { day: d1, subjects: 5, value: (i) => 190 + 5 * i, tag: 'C1' },
        { day: d2, subjects: 5, value: () => 10, tag: 'C2' },
      ]);
      const days = await f.get(`/v1/kpis/spend/series?grain=day&from=${d1}&to=${d2}`, 'b');
      expect(days.dominance).toBe(60);
      // c holds 1000 of 1100 on the 9th: above 60 %. Its change is not released (the rule is
      // applied to every change, docs/privacy.md §3), and without it the 9th has two partners.
      expect(cellOf(days, d1, null)).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'pending' });
      expect(cellOf(days, d1, null)!.reason).toContain('3 new distinct subjects');
      expect(cellOf(days, d2, null)).toMatchObject({ state: 'ok', value: 3050 });
      // The week holds only what was released: the 10th. Before: the week was shown whole, and
      // week − the 10th − b's own 50 = 1050 gave c's 1000 within a's 50.
      const week = await f.get(`/v1/kpis/spend/series?grain=week&from=${d1}&to=${d2}`, 'b');
      expect(cellOf(week, '2026-11-09', null)).toMatchObject({ state: 'held', value: 3050 });
    } finally {
      await f.close();
    }
  });
});

describe('dominance — padding one’s own pending part against a dominated change', () => {
  it('a reader padding its own part gets a bounded number of verdicts on a dominated part, then none until that part’s own partner changes it', async () => {
    // Days, a combined sum, dominance 60 %, k = 3, three partners. b's change (100) and c's (10)
    // wait for a third partner; a sends 50, so b holds 100 of 160. Before: a added one subject of
    // 1 at a time and the day was released at a's 57 and not at 56 — b + c = 110 from the value,
    // and b = 100 within 0.6 from where it flipped.
    const kpi: KpiDef = { id: 'spend', measure: 'sum', grains: ['day'], breakdown: 'combined', dominance: 60 };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi]));
    const day = '2026-11-16';
    const spend = async (partner: string) =>
      cellOf(await f.get(`/v1/kpis/spend/series?grain=day&from=${day}&to=${day}`, partner), day, null)!;
    try {
      await f.push('b', 'spend', [{ day, subjects: 3, value: (i) => [34, 33, 33][i]!, tag: 'B1' }]);
      await f.push('c', 'spend', [{ day, subjects: 3, value: (i) => [3, 3, 4][i]!, tag: 'C1' }]);
      await f.push('a', 'spend', [{ day, subjects: 3, value: (i) => [17, 17, 16][i]!, tag: 'A1' }]);
      expect(await spend('a')).toMatchObject({ state: 'suppressed', value: null });
      // a pads one subject of 1 at a time, well past the flip (57): its first two pads judge b's
      // part again (at 51 and 52: both still above 60 %), and then nothing of a's or c's does.
      for (let i = 1; i <= 12; i++) {
        await f.push('a', 'spend', [{ day, subjects: 1, value: () => 1, tag: `A-pad${i}` }]);
        expect(await spend('a'), `a at ${50 + i}`).toMatchObject({ state: 'suppressed', value: null });
      }
      await f.push('c', 'spend', [{ day, subjects: 3, value: () => 1, tag: 'C2' }]);
      expect(await spend('a')).toMatchObject({ state: 'suppressed', value: null });
      // b's data for the next day is no change of its part of this one.
      await f.push('b', 'spend', [{ day: '2026-11-17', subjects: 3, value: () => 1, tag: 'B-next' }]);
      expect(await spend('a')).toMatchObject({ state: 'suppressed', value: null });
      // b's own next change of the day (three subjects of 1) judges its part once, against a's 62
      // and c's 13: 103 of 178, under 60 % — the day is released whole.
      await f.push('b', 'spend', [{ day, subjects: 3, value: () => 1, tag: 'B2' }]);
      expect(await spend('a')).toMatchObject({ state: 'ok', value: 62 + 103 + 13 });
      expect(await spend('c')).toMatchObject({ state: 'ok', value: 178 });
    } finally {
      await f.close();
    }
  });

  it('other partners’ later data judges a dominated part again a bounded number of times; then only its own change does', async () => {
    // Weeks, a combined sum, dominance 60 %, k = 3, four partners. b's Monday (300) dominates the
    // week's change beside a's and c's 30 each, and waits: the first verdict on it.
    const kpi: KpiDef = { id: 'spend', measure: 'sum', grains: ['week'], breakdown: 'combined', dominance: 60 };
    const f = await Family.start(agreementFile(['a', 'b', 'c', 'd'], 3, [kpi]));
    const mon = '2026-10-05';
    const week = async () =>
      cellOf(await f.get(`/v1/kpis/spend/series?grain=week&from=${mon}&to=${mon}`, 'a'), mon, null)!;
    try {
      await f.push('b', 'spend', [{ day: mon, subjects: 3, value: () => 100, tag: 'B1' }]);
      await f.push('c', 'spend', [{ day: mon, subjects: 3, value: () => 10, tag: 'C1' }]);
      await f.push('a', 'spend', [{ day: mon, subjects: 3, value: () => 10, tag: 'A1' }]);
      expect(await week()).toMatchObject({ state: 'suppressed', value: null });
      // a pads a subject of 1 on Tuesday: each of the first two judges b's part again (300 of 361,
      // of 362: still above 60 %), DOMINANCE_VERDICTS verdicts in all on it.
      for (let i = 1; i < DOMINANCE_VERDICTS; i++) {
        await f.push('a', 'spend', [{ day: '2026-10-06', subjects: 1, value: () => 1, tag: `A-pad${i}` }]);
        expect(await week()).toMatchObject({ state: 'suppressed', value: null });
      }
      // Now a pads to 302 (b's 300 would be 47 % of 632 and pass) and d joins with 300: neither
      // judges b's unchanged part again. a, c and d are released without it: the week is held at
      // their 632, b's Monday left out.
      await f.push('a', 'spend', [{ day: '2026-10-07', subjects: 3, value: () => 90, tag: 'A2' }]);
      const d1 = await f.push('d', 'spend', [{ day: '2026-10-06', subjects: 3, value: () => 100, tag: 'D1' }]);
      expect(await week()).toMatchObject({ state: 'held', value: 632, asOf: d1 });
      // More of theirs, on Thursday (a 300, c 30): b's part still waits, and two partners' change stays pending.
      await f.push('c', 'spend', [{ day: '2026-10-08', subjects: 3, value: () => 10, tag: 'C2' }]);
      await f.push('a', 'spend', [{ day: '2026-10-08', subjects: 3, value: () => 100, tag: 'A3' }]);
      expect(await week()).toMatchObject({ state: 'held', value: 632, asOf: d1 });
      // b's own Monday changes (three more subjects of 1): judged on its new part, 303 of 633, and
      // released with a's and c's Thursday.
      await f.push('b', 'spend', [{ day: mon, subjects: 3, value: () => 1, tag: 'B2' }]);
      expect(await week()).toMatchObject({ state: 'ok', value: 632 + 300 + 30 + 303 });
    } finally {
      await f.close();
    }
  });

  it('two partners that each dominate a small one’s change, one after the other, still meet', async () => {
    // With consent (two partners suffice). c's 10 waits alone; a's 100 dominates it and waits;
    // b's 100 comes later: b had nothing near a's Monday when a's verdict fell, so it judges a's
    // part again, and a, b and c are released together (100, 100, 10 of 210: none above 60 %).
    const kpi: KpiDef = { id: 'spend', measure: 'sum', grains: ['day'], breakdown: 'combined', dominance: 60 };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi], 'twoPartyConsent: true'));
    const day = '2026-11-16';
    try {
      await f.push('c', 'spend', [{ day, subjects: 3, value: (i) => [3, 3, 4][i]!, tag: 'C1' }]);
      await f.push('a', 'spend', [{ day, subjects: 3, value: (i) => [34, 33, 33][i]!, tag: 'A1' }]);
      const before = cellOf(await f.get(`/v1/kpis/spend/series?grain=day&from=${day}&to=${day}`, 'c'), day, null);
      expect(before).toMatchObject({ state: 'suppressed', value: null });
      await f.push('b', 'spend', [{ day, subjects: 3, value: (i) => [34, 33, 33][i]!, tag: 'B1' }]);
      const after = cellOf(await f.get(`/v1/kpis/spend/series?grain=day&from=${day}&to=${day}`, 'c'), day, null);
      expect(after).toMatchObject({ state: 'ok', value: 210 });
    } finally {
      await f.close();
    }
  });
});

describe("family 4 — across two dimensions: one dimension's cell minus another's", () => {
  // Two dimensions cut each other into cells no request names: region north minus channel app is
  // north∩web less south∩app, and where a combination does not occur (the app only in the north)
  // that is north∩web alone. A ninth review read a partner's one subject there this way.
  const values = { region: ['north', 'south'], channel: ['web', 'app'] };
  for (const measure of ['sum', 'avg'] as const)
    it(`${measure}: a partner's part of north∩web below k withholds every cell holding it, at every grain`, async () => {
      const kpi: KpiDef = {
        id: 'orders',
        measure,
        grains: ['day', 'week'],
        dims: ['region', 'channel'],
        values,
        counts: 'exact',
      };
      const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi]));
      try {
        // a's and c's own days elsewhere in the week; b on Wednesday 18 November: three subjects
        // by app in the north (6 each), one of them also by web in the north (40), three by web
        // in the south (2 each). Nothing by app in the south.
        for (const partner of ['a', 'c'])
          await f.push(partner, 'orders', [
            {
              day: '2026-11-17',
              subjects: 3,
              value: () => 5,
              tag: `${partner}-t`,
              dims: { region: 'south', channel: 'app' },
            },
          ]);
        await f.push('b', 'orders', [
          { day: '2026-11-18', subjects: 3, value: () => 6, tag: 'b-s', dims: { region: 'north', channel: 'app' } },
          { day: '2026-11-18', subjects: 1, value: () => 40, tag: 'b-s', dims: { region: 'north', channel: 'web' } },
          { day: '2026-11-18', subjects: 3, value: () => 2, tag: 'b-w', dims: { region: 'south', channel: 'web' } },
        ]);
        for (const grain of kpi.grains) {
          const period = grain === 'day' ? '2026-11-18' : '2026-11-16';
          const read = (by: string) =>
            f.get(`/v1/kpis/orders/series?grain=${grain}&by=${by}&from=2026-11-16&to=2026-11-22`, 'a');
          // Before: north (58, n 3) minus app (18, n 3) was b's 40 at both grains; now the cells
          // holding north∩web (north, web, b's part, the total) are withheld…
          const region = await read('region');
          const channel = await read('channel');
          expect(cellOf(region, period, 'north')?.value, grain).toBeNull();
          expect(cellOf(channel, period, 'web')?.value, grain).toBeNull();
          expect(cellOf(await read('partner'), period, 'b')?.value, grain).toBeNull();
          // …and those that hold only parts of k still show.
          if (grain === 'day') {
            expect(cellOf(channel, period, 'app')).toMatchObject({ value: measure === 'sum' ? 18 : 6, n: 3 });
            expect(cellOf(region, period, 'south')).toMatchObject({ value: measure === 'sum' ? 6 : 2, n: 3 });
          }
        }
        expect(
          leaks(measure, f.points('orders'), await f.readAll('a', kpi, '2026-11-16', '2026-11-22'), 'a', 3),
        ).toEqual([]);
      } finally {
        await f.close();
      }
    });

  it('a change: its part of north∩web below k waits, though its part of each region and channel has k', async () => {
    const kpi: KpiDef = { id: 'orders', measure: 'sum', grains: ['day'], dims: ['region', 'channel'], values };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi]));
    try {
      // Released first: b's three subjects by app in the north and three by web in the south.
      await f.push('b', 'orders', [
        { day: '2026-11-18', subjects: 3, value: () => 6, tag: 'b-s', dims: { region: 'north', channel: 'app' } },
        { day: '2026-11-18', subjects: 3, value: () => 2, tag: 'b-w', dims: { region: 'south', channel: 'web' } },
      ]);
      const before = await f.get('/v1/kpis/orders/series?grain=day&by=region&from=2026-11-18&to=2026-11-18', 'a');
      expect(cellOf(before, '2026-11-18', 'north')).toMatchObject({ value: 18, state: 'ok' });
      // Then a change of four subjects in the north (one of them by web: 40), four by web, three
      // by app and three in the south: each region's and channel's part of it has k. Before, the
      // step released it: north (76) minus app (36) was that one subject's 40. Its part of
      // north∩web is one subject: that part waits, and protects the cells holding it.
      const snap = await f.push('b', 'orders', [
        { day: '2026-11-18', subjects: 1, value: () => 40, tag: 'b-s', dims: { region: 'north', channel: 'web' } },
        { day: '2026-11-18', subjects: 3, value: () => 6, tag: 'b-x', dims: { region: 'north', channel: 'app' } },
        { day: '2026-11-18', subjects: 3, value: () => 2, tag: 'b-y', dims: { region: 'south', channel: 'web' } },
      ]);
      for (const by of ['region', 'channel', 'partner']) {
        const s = await f.get(`/v1/kpis/orders/series?grain=day&by=${by}&from=2026-11-18&to=2026-11-18`, 'a');
        expect(s.snapshot).toBeGreaterThanOrEqual(snap);
        const shown = Object.fromEntries(s.cells.map((c) => [c.group, c.value]));
        expect(shown, by).toEqual(
          by === 'region' ? { north: null, south: 12 } : by === 'channel' ? { app: 36, web: null } : { b: null },
        );
      }
      expect(
        leaks('sum', f.points('orders'), await f.readAll('a', kpi, '2026-11-18', '2026-11-18'), 'a', 3, {
          changes: true,
        }),
      ).toEqual([]);
    } finally {
      await f.close();
    }
  });
});

describe('family 5 — across snapshots', () => {
  /** Every cell the partner can read at each snapshot, as the auditor takes them. */
  async function readEvery(f: Family, partner: string, kpi: KpiDef, from: string, to: string, snapshots: number[]) {
    const out: ServedCell[] = [];
    for (const s of snapshots) out.push(...(await f.readAll(partner, kpi, from, to, s)));
    return out;
  }

  for (const measure of ['sum', 'avg'] as const) {
    it(`${measure}: a late point into a closed day holds the day and the week at their earlier values until the change passes`, async () => {
      const kpi: KpiDef = { id: 'late', measure, grains: ['day', 'week'], counts: 'exact' };
      const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
      const series = (grain: string, by: string, partner: string, snapshot?: number) =>
        f.get(
          `/v1/kpis/late/series?grain=${grain}&by=${by}&from=2026-11-09&to=2026-11-15${snapshot ? `&snapshot=${snapshot}` : ''}`,
          partner,
        );
      try {
        const s1 = await f.push('a', 'late', [
          { day: '2026-11-09', subjects: 4, value: () => 10, tag: 'A1' },
          { day: '2026-11-10', subjects: 4, value: () => 11, tag: 'A2' },
        ]);
        const s2 = await f.push('b', 'late', [
          { day: '2026-11-09', subjects: 4, value: () => 20, tag: 'B1' },
          { day: '2026-11-10', subjects: 4, value: () => 21, tag: 'B2' },
        ]);
        const before = await series('day', 'none', 'a');
        const monday = cellOf(before, '2026-11-09', null)!;
        expect(monday).toMatchObject({ state: 'ok', value: measure === 'sum' ? 120 : 15, n: 8 });
        const atS2 = JSON.stringify(await series('week', 'partner', 'a', s2));
        // b sends one late point for Monday. Before: Monday at s3 − Monday at s2 = 7 (and, for the
        // average, (8·15 + x)/9 with n 9 gave x) — b's single point, a part of one subject.
        const s3 = await f.push('b', 'late', [{ day: '2026-11-09', subjects: 1, value: () => 7, tag: 'LATE' }]);
        for (const by of ['none', 'partner']) {
          const day = await series('day', by, 'a');
          expect(day.snapshot).toBe(s3);
          const held = cellOf(day, '2026-11-09', by === 'none' ? null : 'b')!;
          expect(held, by).toMatchObject({ state: 'held', reasonCode: 'held', asOf: s2 });
          expect(held.reason).toMatch(/3 new distinct subjects/);
          if (by === 'none') expect(held).toMatchObject({ value: monday.value, n: 8 });
          // Tuesday and a's Monday did not change: disclosed as they were.
          expect(cellOf(day, '2026-11-10', by === 'none' ? null : 'b')!.state).toBe('ok');
          if (by === 'partner') expect(cellOf(day, '2026-11-09', 'a')!.state).toBe('ok');
          const week = cellOf(await series('week', by, 'a'), '2026-11-09', by === 'none' ? null : 'b')!;
          expect(week, `week by ${by}`).toMatchObject({ state: 'held', asOf: s2 });
        }
        // What was served at s2 is still served, byte for byte.
        expect(JSON.stringify(await series('week', 'partner', 'a', s2))).toBe(atS2);
        // a's own new data moves what it touches (Tuesday, the week), never b's late point.
        const s4 = await f.push('a', 'late', [{ day: '2026-11-10', subjects: 3, value: () => 12, tag: 'A3' }]);
        const tuesday = cellOf(await series('day', 'none', 'a'), '2026-11-10', null)!;
        expect(tuesday).toMatchObject({ state: 'ok', n: 11 });
        const week4 = cellOf(await series('week', 'none', 'a'), '2026-11-09', null)!;
        expect(week4).toMatchObject({ state: 'held', asOf: s4, n: 19 });
        // Two more of b's subjects on Monday: b's change since Monday's value has three subjects.
        const s5 = await f.push('b', 'late', [{ day: '2026-11-09', subjects: 2, value: () => 8, tag: 'LATE2' }]);
        const after = await series('day', 'none', 'a');
        expect(cellOf(after, '2026-11-09', null)).toMatchObject({
          state: 'ok',
          value: measure === 'sum' ? 120 + 7 + 16 : (120 + 7 + 16) / 11,
          n: 11,
        });
        expect(cellOf(await series('week', 'none', 'a'), '2026-11-09', null)).toMatchObject({ state: 'ok', n: 22 });
        // The auditor, over every snapshot read: no foreign part below k, and no foreign change
        // between two snapshots below k, is determined. b's late points were released at s5.
        const points = f.points('late').map((p) => (p.subject.startsWith('LATE') ? { ...p, released: s5 } : p));
        const served = await readEvery(f, 'a', kpi, '2026-11-09', '2026-11-15', [s1, s2, s3, s4, s5]);
        expect(leaks(measure, points, served, 'a', 3, { changes: true })).toEqual([]);
        // The harness has teeth: served as before (every cell at its landed points), b's late point is found.
        const before5 = served.map((c) => (c.state === 'held' ? { ...c, state: 'ok' as const } : c));
        const landed = f.points('late');
        expect(leaks(measure, landed, before5, 'a', 3, { changes: true }).length).toBeGreaterThan(0);
      } finally {
        await f.close();
      }
    });
  }

  it('a release step that fails at every attempt keeps its batch out of every figure (fail closed) until a later batch of the KPI releases it', async () => {
    const kpi: KpiDef = { id: 'closed', measure: 'sum', grains: ['day', 'week'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
    const day = async () =>
      cellOf(await f.get('/v1/kpis/closed/series?grain=day&from=2026-11-16&to=2026-11-16', 'a'), '2026-11-16', null);
    try {
      await f.push('a', 'closed', [{ day: '2026-11-16', subjects: 4, value: () => 1, tag: 'A1' }]);
      const duck = f.t.room.duck;
      const real = duck.releaser;
      const failures = duck.releaseFailures;
      const retries = duck.releaseRetries;
      const committed = { ...duck.releaseSteps };
      let attempts = 0;
      duck.releaser = () => {
        attempts++;
        return Promise.reject(new Error('release step down'));
      };
      let s2: number;
      try {
        s2 = await f.push('b', 'closed', [{ day: '2026-11-16', subjects: 4, value: () => 2, tag: 'B1' }]);
      } finally {
        duck.releaser = real;
      }
      // Three attempts, the snapshot waiting for them; then the step is given up.
      expect(attempts).toBe(3);
      expect(duck.releaseRetries).toBe(retries + 2);
      expect(duck.releaseFailures).toBe(failures + 1);
      const metrics = await f.t.metrics();
      expect(metrics).toMatch(new RegExp(`^parity_release_failures_total ${failures + 1}$`, 'm'));
      expect(metrics).toMatch(new RegExp(`^parity_release_retries_total ${retries + 2}$`, 'm'));
      // A step given up is no committed step, nor are its attempts' seconds counted.
      expect(metrics).toMatch(new RegExp(`^parity_release_steps_total ${committed.count}$`, 'm'));
      expect(duck.releaseSteps.seconds).toBe(committed.seconds);
      // The snapshot is visible, b's points are not in it: the day keeps a's value, held.
      expect(await day()).toMatchObject({ state: 'held', value: 4, asOf: s2 - 1 });
      // a's next batch touches the KPI: its release step decides on b's waiting points too.
      await f.push('a', 'closed', [{ day: '2026-11-17', subjects: 4, value: () => 1, tag: 'A2' }]);
      expect(await day()).toMatchObject({ state: 'ok', value: 12 });
      const after = await f.t.metrics();
      expect(after).toMatch(new RegExp(`^parity_release_steps_total ${committed.count + 1}$`, 'm'));
      expect(Number(/^parity_release_seconds_total (\S+)$/m.exec(after)![1])).toBeGreaterThan(committed.seconds);
    } finally {
      await f.close();
    }
  });

  it('a release step that fails once is run again at its own snapshot before anyone reads it: the batch is in its first figures', async () => {
    const kpi: KpiDef = { id: 'again', measure: 'sum', grains: ['day', 'week'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
    const dayAt = async (snapshot: number) =>
      cellOf(
        await f.get(`/v1/kpis/again/series?grain=day&from=2026-11-16&to=2026-11-16&snapshot=${snapshot}`, 'a'),
        '2026-11-16',
        null,
      );
    try {
      const s1 = await f.push('a', 'again', [{ day: '2026-11-16', subjects: 4, value: () => 1, tag: 'A1' }]);
      const duck = f.t.room.duck;
      const real = duck.releaser;
      const failures = duck.releaseFailures;
      const retries = duck.releaseRetries;
      const seen: number[] = []; // the latest snapshot readers could see at each attempt
      const at: number[] = []; // the snapshot each attempt releases at
      duck.releaser = (exec, snapshot, kpis) => {
        seen.push(duck.snapshots.latest);
        at.push(snapshot);
        if (seen.length === 1) return Promise.reject(new Error('DuckDB short of memory, for a moment'));
        return real(exec, snapshot, kpis);
      };
      let s2: number;
      try {
        s2 = await f.push('b', 'again', [{ day: '2026-11-16', subjects: 4, value: () => 2, tag: 'B1' }]);
      } finally {
        duck.releaser = real;
      }
      // Both attempts ran while readers still saw the snapshot before it.
      expect(seen).toEqual([s1, s1]);
      expect(s2).toBe(s1 + 1);
      expect(at).toEqual([s2, s2]);
      expect(duck.releaseRetries).toBe(retries + 1);
      expect(duck.releaseFailures).toBe(failures);
      // No later batch: b's points are in the day at their own snapshot, released, and the
      // snapshot before it is as it was.
      expect(await dayAt(s2)).toMatchObject({ state: 'ok', value: 12 });
      expect(await dayAt(s1)).toMatchObject({ state: 'ok', value: 4 });
    } finally {
      await f.close();
    }
  });

  it('a store closing while a failed release step waits to run again gives the step up at once, without another attempt', async () => {
    const kpi: KpiDef = { id: 'stopping', measure: 'sum', grains: ['day', 'week'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
    const duck = f.t.room.duck;
    const failures = duck.releaseFailures;
    // A pause far longer than any close: a close that ended the step sooner did not wait it out.
    duck.releaseRetry = { firstMs: 120_000, maxMs: 120_000 };
    let attempts = 0;
    duck.releaser = () => {
      attempts++;
      return Promise.reject(new Error('release step down'));
    };
    try {
      const pushed = f.push('b', 'stopping', [{ day: '2026-11-16', subjects: 4, value: () => 2, tag: 'B1' }]);
      pushed.catch(() => undefined); // its answer is not what this test is about
      const deadline = Date.now() + 30_000;
      while (attempts === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(attempts).toBe(1);
      const t0 = performance.now();
      await duck.close(); // during the wait before the second attempt
      const waited = () => performance.now() - t0;
      while (duck.releaseFailures === failures && waited() < 60_000) await new Promise((r) => setTimeout(r, 10));
      expect(duck.releaseFailures).toBe(failures + 1);
      expect(waited()).toBeLessThan(60_000); // half the pause at most: the close ended the wait
      expect(attempts).toBe(1); // and no second attempt
    } finally {
      await f.close().catch(() => undefined);
    }
  });

  it('batches that commit while a release step runs are settled by one step at the highest of their snapshots, pending at the ones before it', async () => {
    const kpi: KpiDef = { id: 'grouped', measure: 'sum', grains: ['day', 'week'], counts: 'exact' };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
    const day = (partner: string, snapshot: number) => dayCell(f, 'grouped', partner, snapshot);
    try {
      const s1 = await f.push('a', 'grouped', [{ day: '2026-11-16', subjects: 4, value: () => 1, tag: 'A1' }]);
      // b1's release step waits at a gate, and a's next two batches land meanwhile: 2 subjects
      // each (< k), so neither change passes alone; together they do.
      const held = await landAroundHeldStep(
        f.t.room.duck,
        () => f.push('b', 'grouped', [{ day: '2026-11-16', subjects: 4, value: () => 2, tag: 'B1' }]),
        ['A2', 'A3'].map(
          (tag) => () => f.push('a', 'grouped', [{ day: '2026-11-16', subjects: 2, value: () => 1, tag }]),
        ),
      );
      const s2 = held.first;
      // a2 and a3 take their numbers in the order their bodies are in.
      const [s3, s4] = held.during.sort((x, y) => x - y) as [number, number];
      expect([s2, s3, s4]).toEqual([s1 + 1, s1 + 2, s1 + 3]);
      // One step for s2, then one for s3 and s4 together, at s4, over the KPIs either touched.
      expect(held.steps).toEqual([
        { snapshot: s2, kpis: ['grouped'] },
        { snapshot: s4, kpis: ['grouped'] },
      ]);
      // At s3 its batch's points are pending: the day holds its released value (a1 and b1); at s4 both
      // small batches count, released together.
      for (const reader of ['a', 'b']) {
        expect(await day(reader, s3)).toMatchObject({ state: 'held', value: 12, asOf: s2 });
        expect(await day(reader, s4)).toMatchObject({ state: 'ok', value: 16 });
      }
      // Every snapshot, read by either partner, gives away nothing the rules withhold.
      // b, reading every snapshot, cannot tell one small batch's two points from the other's.
      const points = f.points('grouped').map((p) => (p.snapshot === s3 ? { ...p, released: s4 } : p));
      const served = await readEvery(f, 'b', kpi, '2026-11-16', '2026-11-16', [s1, s2, s3, s4]);
      expect(leaks('sum', points, served, 'b', 3, { changes: true })).toEqual([]);
    } finally {
      await f.close();
    }
  });

  it('a KPI only the lower snapshot of a settled group touched changes at the higher one, and caches and rollups know it', async () => {
    const kpis: KpiDef[] = ['left', 'right'].map((id) => ({ id, measure: 'sum', grains: ['day', 'week'] }));
    const f = await Family.start(agreementFile(['a', 'b'], 3, kpis));
    const day = (kpi: string, snapshot?: number) => dayCell(f, kpi, 'a', snapshot);
    try {
      const s1 = await f.push('a', 'left', [{ day: '2026-11-16', subjects: 4, value: () => 1, tag: 'A1' }]);
      // One batch for each KPI lands while b1's step waits: they are settled together.
      const held = await landAroundHeldStep(
        f.t.room.duck,
        () => f.push('b', 'right', [{ day: '2026-11-16', subjects: 4, value: () => 1, tag: 'B1' }]),
        [
          () => f.push('a', 'left', [{ day: '2026-11-16', subjects: 4, value: () => 1, tag: 'A2' }]),
          () => f.push('b', 'right', [{ day: '2026-11-16', subjects: 4, value: () => 1, tag: 'B2' }]),
        ],
      );
      const s2 = held.first;
      const [sa, sb] = held.during as [number, number];
      const [s3, s4] = [Math.min(sa, sb), Math.max(sa, sb)];
      expect(held.steps.map((x) => ({ snapshot: x.snapshot, kpis: [...x.kpis].sort() }))).toEqual([
        { snapshot: s2, kpis: ['right'] },
        { snapshot: s4, kpis: ['left', 'right'] },
      ]);
      // The KPI of the lower snapshot, s3: its batch is released at s4, so its figure moves at s4
      // although no batch of it landed there. The latest read comes first, so a cache or rollup
      // keyed on the KPI's last batch (s3) would serve it for s3 too.
      const [lower, before] = sa === s3 ? ['left', s1] : ['right', s2];
      expect(await day(lower)).toMatchObject({ state: 'ok', value: 8 });
      expect(await day(lower, s4)).toMatchObject({ state: 'ok', value: 8 });
      expect(await day(lower, s3)).toMatchObject({ state: 'held', value: 4, asOf: before });
      expect(f.t.room.duck.touched.effective(lower, s4)).toBe(s4);
    } finally {
      await f.close();
    }
  });

  it('a median stepped with own points: one move on the others’ unchanged points, then it waits until they change (§2.3)', async () => {
    const kpi: KpiDef = { id: 'wait', measure: 'p50', grains: ['day', 'week'] };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi]));
    const D = '2026-11-18';
    const cell = async (by: string, group: string | null, snapshot?: number) =>
      cellOf(
        await f.get(
          `/v1/kpis/wait/series?grain=day&by=${by}&from=${D}&to=${D}${snapshot ? `&snapshot=${snapshot}` : ''}`,
          'a',
        ),
        D,
        group,
      );
    const week = async () =>
      cellOf(await f.get(`/v1/kpis/wait/series?grain=week&from=${D}&to=${D}`, 'a'), '2026-11-16', null);
    const B = [17, 42, 73, 90];
    try {
      const s1 = await f.push('b', 'wait', [{ day: D, subjects: 4, value: (i) => B[i]!, tag: 'B1' }]);
      // The attack: three points of its own below everything, read the median, three more, read again…
      // Before, each push moved the median one order statistic up b's points: 17, then (17+42)/2, then 42, 73.
      const s2 = await f.push('a', 'wait', [{ day: D, subjects: 3, value: () => 0, tag: 'A1' }]);
      expect(await cell('none', null)).toMatchObject({ state: 'ok', value: 17 });
      const s3 = await f.push('a', 'wait', [{ day: D, subjects: 3, value: () => 1000, tag: 'A2' }]);
      const s4 = await f.push('a', 'wait', [{ day: D, subjects: 3, value: () => 1000, tag: 'A3' }]);
      // a moved the cell alone last: its next moves wait, in the day, the week, and its own cell.
      for (const c of [await cell('none', null), await week()])
        expect(c).toMatchObject({ state: 'held', value: 17, reasonCode: 'held', asOf: s2 });
      expect(await cell('partner', 'a')).toMatchObject({ state: 'held', value: 0, asOf: s2 });
      expect(await cell('partner', 'b')).toMatchObject({ state: 'ok', value: (42 + 73) / 2 });
      // Another partner's points elsewhere in the week do not count as a change of this day.
      const s5 = await f.push('c', 'wait', [{ day: '2026-11-19', subjects: 3, value: () => 5, tag: 'C1' }]);
      expect(await cell('none', null)).toMatchObject({ state: 'held', value: 17, asOf: s2 });
      // b changes the day: its change and a's waiting ones move the cell together.
      const s6 = await f.push('b', 'wait', [{ day: D, subjects: 3, value: () => 50, tag: 'B2' }]);
      const all = [0, 0, 0, 1000, 1000, 1000, 1000, 1000, 1000, ...B, 50, 50, 50].sort((x, y) => x - y);
      expect(await cell('none', null)).toMatchObject({ state: 'ok', value: (all[7]! + all[8]!) / 2 });
      // The old snapshots still say what they said.
      expect(await cell('none', null, s4)).toMatchObject({ state: 'held', value: 17, asOf: s2 });
      // The auditor: no cell was disclosed over the same foreign points with three sets of a's own.
      const released = (p: Point) => (/^A[23]/.test(p.subject) ? { ...p, released: s6 } : p);
      const points = f.points('wait').map(released);
      const served = await readEvery(f, 'a', kpi, D, D, [s1, s2, s3, s4, s5, s6]);
      const scenario: Scenario = { measure: 'p50', points };
      expect(quantileFindings(scenario, served, { attacker: 'a', k: 3 }).filter((x) => x.kind === 'stepped')).toEqual(
        [],
      );
      // And it would have found the attack: the same reads with every push released at once.
      const stepped = served.map((c) => ({ ...c, state: 'ok' as const }));
      expect(
        quantileFindings({ measure: 'p50', points: f.points('wait') }, stepped, { attacker: 'a', k: 3 }).filter(
          (x) => x.kind === 'stepped',
        ).length,
      ).toBeGreaterThan(0);
    } finally {
      await f.close();
    }
  });

  it('a combined figure moves only once three partners have sent enough since its last value', async () => {
    const kpi: KpiDef = { id: 'today', measure: 'sum', grains: ['day'], breakdown: 'combined' };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi]));
    const day = async (partner: string) =>
      cellOf(await f.get('/v1/kpis/today/series?grain=day&from=2026-11-20&to=2026-11-20', partner), '2026-11-20', null);
    try {
      await f.push('a', 'today', [{ day: '2026-11-20', subjects: 3, value: () => 1, tag: 'A1' }]);
      await f.push('b', 'today', [{ day: '2026-11-20', subjects: 3, value: () => 2, tag: 'B1' }]);
      expect(await day('a')).toMatchObject({ state: 'suppressed', reasonCode: 'few_partners' });
      const s3 = await f.push('c', 'today', [{ day: '2026-11-20', subjects: 3, value: () => 4, tag: 'C1' }]);
      expect(await day('a')).toMatchObject({ state: 'ok', value: 21 });
      // Before: c's second batch moved the figure by c's part alone: 12 − 21 + … gave c's new points.
      await f.push('c', 'today', [{ day: '2026-11-20', subjects: 3, value: () => 5, tag: 'C2' }]);
      await f.push('a', 'today', [{ day: '2026-11-20', subjects: 3, value: () => 1, tag: 'A2' }]);
      expect(await day('b')).toMatchObject({ state: 'held', value: 21, asOf: s3 });
      const s6 = await f.push('b', 'today', [{ day: '2026-11-20', subjects: 3, value: () => 2, tag: 'B2' }]);
      expect(await day('c')).toMatchObject({ state: 'ok', value: 21 + 15 + 3 + 6 });
      const points = f.points('today').map((p) => (/^(A2|C2)/.test(p.subject) ? { ...p, released: s6 } : p));
      const served = await readEvery(f, 'b', kpi, '2026-11-20', '2026-11-20', [s3, s3 + 1, s3 + 2, s6]);
      expect(leaks('sum', points, served, 'b', 3, { changes: true, everyPartnerPart: true })).toEqual([]);
    } finally {
      await f.close();
    }
  });
});

describe('family 5 — across snapshots: a held cell’s released points', () => {
  // Released points are judged under the rules of their time. Once a version withdraws the
  // partners' consent to two-partner figures, a day a and b alone released is of two partners;
  // c's points there wait (c alone would move it) and lift the day's points to three partners, but
  // what a held cell shows is its released points': a's and b's alone. No grain or breakdown is
  // added, so only the rule on released parts (`nrp`) withholds it.
  it('consent withdrawn: a combined day two partners released is not shown held beside a third one’s pending points', async () => {
    const kpi: KpiDef = { id: 'trio', measure: 'sum', grains: ['day', 'week'], breakdown: 'combined' };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [kpi], 'twoPartyConsent: true'));
    try {
      await f.push('a', 'trio', [{ day: '2026-11-16', subjects: 3, value: () => 5, tag: 'aM' }]);
      await f.push('b', 'trio', [{ day: '2026-11-16', subjects: 3, value: () => 9, tag: 'bM' }]);
      await f.push('c', 'trio', [{ day: '2026-11-17', subjects: 3, value: () => 1, tag: 'cT' }]);
      const day = async () =>
        cellOf(await f.get('/v1/kpis/trio/series?grain=day&from=2026-11-16&to=2026-11-22', 'a'), '2026-11-16', null);
      expect(await day()).toMatchObject({ state: 'ok', value: 42 });
      await f.amend(agreementFile(['a', 'b', 'c'], 3, [kpi]), 'a', 'b', 'c');
      expect(await day()).toMatchObject({ state: 'suppressed', reasonCode: 'few_partners' });
      await f.push('c', 'trio', [{ day: '2026-11-16', subjects: 3, value: () => 2, tag: 'cLATE' }]);
      // Without the rule: held at 42, a figure of two partners under the three-partner rule.
      expect(await day()).toMatchObject({ state: 'suppressed', value: null });
      const released = f.points('trio').filter((p) => !p.subject.startsWith('cLATE'));
      expect(
        leaks('sum', released, await f.readAll('a', kpi, '2026-11-16', '2026-11-22'), 'a', 3, {
          everyPartnerPart: true,
        }),
      ).toEqual([]);
    } finally {
      await f.close();
    }
  });
});

describe('family 6 — retention', () => {
  it('the shared retention.deleted entry holds no counts', async () => {
    const kpi: KpiDef = { id: 'kept', measure: 'count', grains: ['day'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi], 'retention: P1Y'));
    try {
      await f.push('a', 'kept', [{ day: '2025-11-03', subjects: 5, value: () => 1, tag: 'OLD' }]);
      await f.push('b', 'kept', [{ day: '2025-11-03', subjects: 2, value: () => 1, tag: 'OLD' }]);
      await f.push('a', 'kept', [{ day: '2026-11-03', subjects: 5, value: () => 1, tag: 'NEW' }]);
      const r = await runRetention(f.t.room);
      expect(r.snapshot).not.toBeNull();
      // Before: { deleted: 7, perKpi: { kept: 7 } } for every reader: 7 − a's own 5 = b's 2.
      const log = await f.get<{ entries: { action: string; details: Record<string, unknown> }[] }>(
        '/v1/audit?action=retention.deleted',
        'a',
        'steering',
      );
      expect(log.entries).toHaveLength(1);
      expect(log.entries[0]!.details).toEqual({
        kpis: ['kept'],
        before: '2025-11-23',
        retention: 'P1Y',
        snapshot: r.snapshot,
      });
    } finally {
      await f.close();
    }
  });
  it('a cell that lost points to retention is withheld, so its change does not give the deleted part away', async () => {
    // Weeks and months only: b's two subjects on Saturday 2025-11-22 are no cell of their own.
    const kpi: KpiDef = { id: 'kept', measure: 'sum', grains: ['week', 'month'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi], 'retention: P1Y'));
    try {
      await f.push('a', 'kept', [
        { day: '2025-11-20', subjects: 5, value: () => 10, tag: 'A1' },
        { day: '2025-11-23', subjects: 5, value: () => 20, tag: 'A2' },
        { day: '2025-11-25', subjects: 5, value: () => 30, tag: 'A3' },
      ]);
      await f.push('b', 'kept', [
        { day: '2025-11-22', subjects: 2, value: (i) => 100 + i, tag: 'B1' },
        { day: '2025-11-23', subjects: 3, value: () => 7, tag: 'B2' },
        { day: '2025-11-25', subjects: 4, value: () => 9, tag: 'B3' },
      ]);
      const range = '&from=2025-11-01&to=2025-11-30';
      const week = (s: Series) => cellOf(s, '2025-11-17', null);
      const before = await f.get(`/v1/kpis/kept/series?grain=week${range}`, 'a');
      // The week 2025-11-17 … 23 holds five subjects of each partner: disclosed.
      expect(week(before)).toMatchObject({ state: 'ok', value: 50 + 201 + 100 + 21 });
      const r = await runRetention(f.t.room);
      expect(r.before).toBe('2025-11-23');
      // Before: the same week was shown again (100 + 21 left), and 50 + 201 + 100 + 21 − 121 − a's
      // own 50 = b's two deleted points, 201: a part of two subjects, below k.
      for (const by of ['none', 'partner']) {
        for (const grain of ['week', 'month']) {
          const s = await f.get(`/v1/kpis/kept/series?grain=${grain}&by=${by}${range}`, 'a');
          expect(s.snapshot).toBe(r.snapshot);
          const first = grain === 'week' ? '2025-11-17' : '2025-11-01';
          const straddling = s.cells.filter((c) => c.period === first);
          expect(straddling.length, `${grain} by ${by}`).toBeGreaterThan(0);
          for (const c of straddling)
            expect(c, `${grain} by ${by}`).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'retention' });
          if (grain === 'week')
            // The next week lost nothing: still shown, its value unchanged.
            expect(s.cells.filter((c) => c.period === '2025-11-24').every((c) => c.state === 'ok')).toBe(true);
        }
      }
      const later = await f.get(`/v1/kpis/kept/series?grain=week${range}`, 'b');
      expect(cellOf(later, '2025-11-24', null)).toMatchObject({ state: 'ok', value: 150 + 36 });
      expect(week(later)!.reason).toMatch(/retention/);
    } finally {
      await f.close();
    }
  });
});

describe('family 7 — metadata: counts that give a withheld figure away', () => {
  it('point counts reach only their own partner; n only where the agreement says counts: exact', async () => {
    const faults: KpiDef = { id: 'faults', measure: 'count', grains: ['day'] };
    const visits: KpiDef = { id: 'visits', measure: 'count', grains: ['day'], counts: 'exact' };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [faults, visits]));
    try {
      const day = '2026-11-16';
      await f.push('a', 'faults', [{ day, subjects: 6, value: () => 1, tag: 'A' }]);
      // b: ten faults of one subject — its cell is withheld …
      await f.push(
        'b',
        'faults',
        Array.from({ length: 10 }, () => ({ day, subjects: 1, value: () => 1, tag: 'B' })),
      );
      await f.push('a', 'visits', [{ day, subjects: 4, value: () => 1, tag: 'V' }]);
      const s = await f.get(`/v1/kpis/faults/series?grain=day&by=partner&from=${day}&to=${day}`, 'a');
      expect(cellOf(s, day, 'b')).toMatchObject({ value: null, reasonCode: 'few_subjects' });
      // … and before, the report's points accepted (10) told every reader b's count; per-feed counts
      // reached steering and the operator.
      type Report = {
        partners: { partner: string; pointsAccepted: number | null }[];
        feeds: { partner: string; kpi: string; points: number | null }[];
      };
      for (const [partner, role] of [
        ['a', 'analyst'],
        ['a', 'steering'],
        [null, 'operator'],
      ] as const) {
        const r = await f.get<Report>('/v1/transparency?month=2026-11', partner, role);
        expect(r.partners.find((p) => p.partner === 'b')!.pointsAccepted, `${partner} ${role}`).toBeNull();
        expect(r.feeds.find((x) => x.partner === 'b' && x.kpi === 'faults')!.points, `${partner} ${role}`).toBeNull();
      }
      const own = await f.get<Report>('/v1/transparency?month=2026-11', 'b', 'admin');
      expect(own.feeds.find((x) => x.partner === 'b' && x.kpi === 'faults')!.points).toBe(10);
      // The shared ingest entries carry no counts either.
      const audit = await f.get<{ entries: { action: string; details: Record<string, unknown> }[] }>(
        '/v1/audit?action=ingest.landed',
        null,
        'operator',
      );
      expect(audit.entries.length).toBeGreaterThan(0);
      for (const e of audit.entries)
        expect(Object.keys(e.details).sort()).toEqual(['checksum', 'contentType', 'snapshot']);
      // /metrics and /readyz: state of the room, never a count of points or subjects, nor a label
      // naming a partner or KPI (docs/privacy.md §4).
      const metrics = await f.t.metrics();
      const series = metrics.split('\n').filter((l) => l && !l.startsWith('#'));
      expect(series.length).toBeGreaterThan(3);
      for (const line of series) {
        expect(line, line).toMatch(/^(parity|process|nodejs)_[a-z_]+ -?[0-9.e+-]+$/);
        expect(line, line).not.toMatch(/point|subject|accepted|rejected|partner|kpi/);
      }
      const ready = (await (await fetch(`${f.t.url}/readyz`)).json()) as Record<string, unknown>;
      expect(Object.keys(ready).sort()).toEqual(['checks', 'snapshot', 'status']);
      // n: a partner's volume per period, shown only where agreed.
      expect(cellOf(s, day, 'a')).toMatchObject({ value: 6, n: null });
      const v = await f.get(`/v1/kpis/visits/series?grain=day&from=${day}&to=${day}`, 'b');
      expect(cellOf(v, day, null)).toMatchObject({ value: 4, n: 4 });
    } finally {
      await f.close();
    }
  });
});

describe('family 7 — metadata: a need-to-know KPI a later version removed', () => {
  it('its audit entries stay hidden from those who could not read it (when it left its band, for whom, which period)', async () => {
    const hidden: KpiDef = { id: 'secret', measure: 'sum', grains: ['day'], band: '{ upper: 5 }' };
    const open: KpiDef = { id: 'open', measure: 'sum', grains: ['day'] };
    const v1 = agreementFile(['a', 'b'], 3, [hidden, open]);
    writeFileSync(
      v1,
      readFileSync(v1, 'utf8').replace(
        '  - id: secret\n    title: secret\n    unit: u\n    subject: thing\n    measure: sum\n    grains: [day]\n    disclosure: partnership',
        '  - id: secret\n    title: secret\n    unit: u\n    subject: thing\n    measure: sum\n    grains: [day]\n    disclosure: need_to_know\n    needToKnow: [reader@a.example]',
      ),
    );
    expect(readFileSync(v1, 'utf8')).toContain('need_to_know');
    const f = await Family.start(v1, { PARITY_ALERTS: 'on' });
    try {
      await f.push('a', 'secret', [{ day: '2026-11-22', subjects: 3, value: () => 100, tag: 'S' }]);
      // The room opens its incidents (steering reads need-to-know KPIs: only to wait for them).
      await vi.waitFor(
        async () => {
          const { incidents } = await f.get<{ incidents: { kpi: { id: string } }[] }>('/v1/incidents', 'a', 'steering');
          expect(incidents.some((i) => i.kpi.id === 'secret')).toBe(true);
        },
        { timeout: timeout(30_000), interval: 100 },
      );
      const entries = async () =>
        (
          await f.get<{ entries: { action: string; target: string | null }[] }>(
            '/v1/audit?action=incident.&limit=1000',
            'b',
          )
        ).entries;
      expect(await entries()).toEqual([]);
      // A co-signed version removes the KPI. Before: b read incident.opened {kpi: secret, scope: a, period…}.
      await f.amend(agreementFile(['a', 'b'], 3, [open]), 'a', 'b');
      expect(await entries()).toEqual([]);
      // Steering, who read it, still sees the record.
      const all = await f.get<{ entries: { action: string }[] }>(
        '/v1/audit?action=incident.&limit=1000',
        'a',
        'steering',
      );
      expect(all.entries.length).toBeGreaterThan(0);
    } finally {
      await f.close();
    }
  });
});

describe('family 8 — run rules judged on withheld values', () => {
  it('bands and breaches are the same bytes whatever value a withheld week holds', async () => {
    const kpi: KpiDef = {
      id: 'delay',
      measure: 'avg',
      grains: ['week'],
      band: '{ method: control, baseline: 4, sigma: 3, rules: [2of3beyond2sigma] }',
      evaluate: '{ grain: week, consecutive: 1 }',
    };
    const weeks = ['2026-10-12', '2026-10-19', '2026-10-26', '2026-11-02', '2026-11-09', '2026-11-16'];
    const served: string[] = [];
    // b's week of 2026-11-09 has one subject: withheld. Its value, 12 (beyond 2σ like the week after)
    // or 10 (inside), decided the 2-of-3 signal of 2026-11-16 before.
    for (const hidden of [12, 10]) {
      const f = await Family.start(agreementFile(['a', 'b'], 3, [kpi]));
      try {
        await f.push(
          'a',
          'delay',
          weeks.map((day) => ({ day, subjects: 4, value: () => 10, tag: `A${day}` })),
        );
        await f.push(
          'b',
          'delay',
          weeks.map((day, i) => ({
            day,
            subjects: i === 4 ? 1 : 4,
            value: () => (i === 4 ? hidden : i === 5 ? 12 : 10 + (i % 2)),
            tag: `B${day}`,
          })),
        );
        const q = 'from=2026-10-12&to=2026-11-22';
        const bands = await f.get<{ bands: { group: string | null; period: string; outside: boolean }[] }>(
          `/v1/kpis/delay/bands?${q}`,
          'a',
        );
        expect(bands.bands.find((b) => b.group === 'b' && b.period === '2026-11-09')!.outside).toBe(false);
        served.push(JSON.stringify(bands) + JSON.stringify(await f.get(`/v1/breaches?kpi=delay&${q}`, 'a')));
      } finally {
        await f.close();
      }
    }
    expect(served[0]).toBe(served[1]);
  });
});

describe('family 9 — agreement changes: cells a new version adds', () => {
  // Released points are judged in the cells of their time. A later version can put them in cells
  // that did not exist then, where pending points (unreleased, not in any served value) lift a
  // released part over the rules: the cell is withheld, and every cell holding its points too.
  it('a day agreed again: no week minus its other days gives a day whose released part is below k', async () => {
    const v1: KpiDef = { id: 'again', measure: 'sum', grains: ['week'] };
    const v2: KpiDef = { ...v1, grains: ['day', 'week'] };
    const f = await Family.start(agreementFile(['a', 'b'], 5, [v1]));
    try {
      // Weeks only; one batch each, released whole: b has one subject on Monday 16 November and
      // five on Tuesday, a six on Tuesday.
      await f.push('a', 'again', [{ day: '2026-11-17', subjects: 6, value: () => 10, tag: 'A' }]);
      await f.push('b', 'again', [
        { day: '2026-11-16', subjects: 1, value: () => 42, tag: 'ONE' },
        { day: '2026-11-17', subjects: 5, value: () => 10, tag: 'B' },
      ]);
      await f.amend(agreementFile(['a', 'b'], 5, [v2]), 'a', 'b');
      // b sends four more subjects for Monday: a change below k, pending. b's Monday has five
      // subjects in all, one of them released.
      await f.push('b', 'again', [{ day: '2026-11-16', subjects: 4, value: () => 7, tag: 'MORE' }]);
      const range = '&from=2026-11-16&to=2026-11-22';
      for (const by of ['none', 'partner']) {
        const group = by === 'none' ? null : 'b';
        const week = cellOf(await f.get(`/v1/kpis/again/series?grain=week&by=${by}${range}`, 'a'), '2026-11-16', group);
        const days = await f.get(`/v1/kpis/again/series?grain=day&by=${by}${range}`, 'a');
        // Before: the week was served held, with b's released points (92, combined 152), and
        // Tuesday as it was (50, combined 110): the week minus Tuesday was b's one point, 42.
        // Two rules close it now: the days over the points from before the version are withheld
        // (`version`), and b's Monday, one released subject beside four pending ones, protects
        // its points, so the week holding it is withheld too.
        expect(cellOf(days, '2026-11-17', group), by).toMatchObject({ state: 'suppressed', reasonCode: 'version' });
        expect(cellOf(days, '2026-11-16', group), by).toMatchObject({
          state: 'suppressed',
          value: null,
          reasonCode: 'few_subjects',
        });
        expect(week, by).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'protects' });
      }
      // The served values are made of released points only: the auditor takes those.
      const released = f.points('again').filter((p) => !p.subject.startsWith('MORE'));
      expect(leaks('sum', released, await f.readAll('a', v2, '2026-11-16', '2026-11-22'), 'a', 5)).toEqual([]);
    } finally {
      await f.close();
    }
  });

  it('a day agreed again, three partners without consent: a day two partners released is not shown held beside a third one’s pending points', async () => {
    const v1: KpiDef = { id: 'trio', measure: 'sum', grains: ['week'], breakdown: 'combined' };
    const v2: KpiDef = { ...v1, grains: ['day', 'week'] };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [v1]));
    try {
      // Weeks only: a and b have three subjects each on Monday 16 November, all three partners
      // three on Tuesday; one batch each, released whole.
      for (const partner of ['a', 'b', 'c'])
        await f.push(partner, 'trio', [
          ...(partner === 'c'
            ? []
            : [{ day: '2026-11-16', subjects: 3, value: () => (partner === 'a' ? 5 : 9), tag: `${partner}M` }]),
          { day: '2026-11-17', subjects: 3, value: () => 1, tag: `${partner}T` },
        ]);
      await f.amend(agreementFile(['a', 'b', 'c'], 3, [v2]), 'a', 'b', 'c');
      // c sends three subjects for Monday: the only partner changing the combined day, pending.
      await f.push('c', 'trio', [{ day: '2026-11-16', subjects: 3, value: () => 2, tag: 'cLATE' }]);
      const days = await f.get('/v1/kpis/trio/series?grain=day&from=2026-11-16&to=2026-11-22', 'a');
      // Before: Monday was served held at 42, a's 15 and b's 27 (three partners, each with three
      // subjects, in all): a read b's Monday off it.
      expect(cellOf(days, '2026-11-16', null)).toMatchObject({ state: 'suppressed', value: null });
      const weeks = await f.get('/v1/kpis/trio/series?grain=week&from=2026-11-16&to=2026-11-22', 'a');
      expect(cellOf(weeks, '2026-11-16', null)).toMatchObject({ state: 'suppressed', value: null });
      const released = f.points('trio').filter((p) => !p.subject.startsWith('cLATE'));
      expect(
        leaks('sum', released, await f.readAll('a', v2, '2026-11-16', '2026-11-22'), 'a', 3, {
          everyPartnerPart: true,
        }),
      ).toEqual([]);
    } finally {
      await f.close();
    }
  });

  // Every point below is released; what leaks is a cell the new version shows set against one
  // the reader kept from the version before (docs/privacy.md §3, agreement changes).
  const cases: {
    name: string;
    partners: string[];
    v1: KpiDef;
    v2: KpiDef;
    batches: { partner: string; rows: { day: string; subjects: number; value: number }[] }[];
    /** What the reader could work out before, for the record. */
    before: string;
    /** The cells of the new grain over the old points, withheld for the version. */
    withheld: { grain: Grain; period: string }[];
    /** A later day, pushed under the new version by every partner: its cells are served. */
    later: string;
    /** Every foreign part is a target (a combined cell's parts, under the three-partner rule). */
    everyPartnerPart?: boolean;
  }[] = [
    {
      name: 'days after weeks: a week kept from before, minus a day shown now',
      partners: ['a', 'b'],
      v1: { id: 'grown', measure: 'sum', grains: ['week'] },
      v2: { id: 'grown', measure: 'sum', grains: ['day', 'week'] },
      batches: [
        { partner: 'a', rows: [{ day: '2026-11-09', subjects: 3, value: 1 }] },
        {
          partner: 'b',
          rows: [
            { day: '2026-11-09', subjects: 3, value: 10 },
            { day: '2026-11-10', subjects: 1, value: 42 },
          ],
        },
      ],
      before: "b's week (72) minus its Monday (30) was its one point on Tuesday, 42",
      withheld: [
        { grain: 'day', period: '2026-11-09' },
        { grain: 'day', period: '2026-11-10' },
      ],
      later: '2026-11-23',
    },
    {
      name: 'days after weeks: a change released in weeks is one subject on a day',
      partners: ['a', 'b'],
      v1: { id: 'grown', measure: 'sum', grains: ['week'] },
      v2: { id: 'grown', measure: 'sum', grains: ['day', 'week'] },
      batches: [
        { partner: 'a', rows: [{ day: '2026-11-09', subjects: 3, value: 1 }] },
        {
          partner: 'b',
          rows: [
            { day: '2026-11-09', subjects: 3, value: 10 },
            { day: '2026-11-10', subjects: 3, value: 20 },
          ],
        },
        {
          partner: 'b',
          rows: [
            { day: '2026-11-10', subjects: 1, value: 7 },
            { day: '2026-11-11', subjects: 3, value: 5 },
          ],
        },
      ],
      before: "b's Tuesday (67) minus its first week (90) less Monday (30) was one late point, 7",
      withheld: [
        { grain: 'day', period: '2026-11-09' },
        { grain: 'day', period: '2026-11-10' },
        { grain: 'day', period: '2026-11-11' },
      ],
      later: '2026-11-23',
    },
    {
      name: 'months after weeks: a week kept from before, minus a month shown now',
      partners: ['a', 'b'],
      v1: { id: 'grown', measure: 'sum', grains: ['week'] },
      v2: { id: 'grown', measure: 'sum', grains: ['week', 'month'] },
      batches: [
        { partner: 'a', rows: [{ day: '2026-09-01', subjects: 3, value: 1 }] },
        {
          partner: 'b',
          rows: [
            { day: '2026-08-31', subjects: 1, value: 42 },
            { day: '2026-09-01', subjects: 3, value: 10 },
          ],
        },
      ],
      before: "b's week of 31 August (72) minus its September (30) was its one point on 31 August, 42",
      withheld: [
        { grain: 'month', period: '2026-08-01' },
        { grain: 'month', period: '2026-09-01' },
      ],
      later: '2026-11-23',
    },
    {
      name: 'weeks after months: a month kept from before, minus a week shown now',
      partners: ['a', 'b'],
      v1: { id: 'grown', measure: 'sum', grains: ['month'] },
      v2: { id: 'grown', measure: 'sum', grains: ['week', 'month'] },
      batches: [
        { partner: 'a', rows: [{ day: '2026-08-04', subjects: 3, value: 1 }] },
        {
          partner: 'b',
          rows: [
            { day: '2026-08-04', subjects: 3, value: 10 },
            { day: '2026-08-31', subjects: 1, value: 42 },
          ],
        },
      ],
      before: "b's August (72) minus its week of 3 August (30) was its one point on 31 August, 42",
      withheld: [
        { grain: 'week', period: '2026-08-03' },
        { grain: 'week', period: '2026-08-31' },
      ],
      later: '2026-11-23',
    },
    {
      name: 'days after weeks, three partners without consent: a week kept from before, minus a day of three',
      partners: ['a', 'b', 'c'],
      v1: { id: 'grown', measure: 'sum', grains: ['week'], breakdown: 'combined' },
      v2: { id: 'grown', measure: 'sum', grains: ['day', 'week'], breakdown: 'combined' },
      batches: [
        { partner: 'a', rows: [{ day: '2026-11-09', subjects: 3, value: 1 }] },
        { partner: 'b', rows: [{ day: '2026-11-09', subjects: 3, value: 2 }] },
        {
          partner: 'c',
          rows: [
            { day: '2026-11-09', subjects: 3, value: 10 },
            { day: '2026-11-11', subjects: 3, value: 100 },
          ],
        },
      ],
      before: "the week (339) minus Monday (39) was c's Wednesday alone, 300",
      everyPartnerPart: true,
      withheld: [
        { grain: 'day', period: '2026-11-09' },
        { grain: 'day', period: '2026-11-11' },
      ],
      later: '2026-11-23',
    },
  ];
  for (const c of cases)
    it(`a grain added — ${c.name}`, async () => {
      const f = await Family.start(agreementFile(c.partners, 3, [c.v1]));
      try {
        let tag = 0;
        for (const b of c.batches)
          await f.push(
            b.partner,
            'grown',
            b.rows.map((r) => ({ ...r, value: () => r.value, tag: `${b.partner}${tag++}` })),
          );
        // Everything the reader could read under the version before, at every snapshot.
        const from = '2026-08-01';
        const to = '2026-11-30';
        const served: ServedCell[] = [];
        for (const s of new Set(f.points('grown').map((p) => p.snapshot)))
          served.push(...(await f.readAll('a', c.v1, from, to, s)));
        await f.amend(agreementFile(c.partners, 3, [c.v2]), c.partners[0]!, ...c.partners.slice(1));
        const now = await f.readAll('a', c.v2, from, to);
        served.push(...now);
        // Before: ${c.before}. The new grain's periods over the points from before are withheld at
        // every breakdown, with the reason `version`.
        const reasons = new Set<string | undefined>();
        for (const w of c.withheld) {
          const cells = now.filter((x) => x.grain === w.grain && x.period === w.period);
          expect(cells.length, `${w.grain} ${w.period}`).toBeGreaterThan(0);
          for (const x of cells) {
            expect(x.state, `${w.grain} ${w.period}`).toBe('suppressed');
            reasons.add(x.reason);
          }
        }
        // (A cell whose own part is small says so first.)
        expect(reasons).toContain('version');
        expect(
          leaks('sum', f.points('grown'), served, 'a', 3, {
            changes: true,
            everyPartnerPart: c.everyPartnerPart ?? false,
          }),
        ).toEqual([]);
        // The new grain shows what lands from the version on.
        for (const partner of c.partners)
          await f.push(partner, 'grown', [{ day: c.later, subjects: 3, value: () => 4, tag: `${partner}later` }]);
        const grain = c.withheld[0]!.grain;
        const later = await f.get(`/v1/kpis/grown/series?grain=${grain}&from=${c.later}&to=${c.later}`, 'a');
        expect(later.cells).toEqual([expect.objectContaining({ state: 'ok', value: 4 * 3 * c.partners.length })]);
      } finally {
        await f.close();
      }
    });

  it('a dimension added back: its breakdown over the points from before is withheld, the combined figure and the partners’ stay served', async () => {
    const v1: KpiDef = { id: 'regions', measure: 'sum', grains: ['week'], dims: ['region'] };
    const v2: KpiDef = { id: 'regions', measure: 'sum', grains: ['week'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [v1]));
    try {
      for (const partner of ['a', 'b'])
        await f.push(partner, 'regions', [
          { day: '2026-11-09', subjects: 4, value: () => 5, tag: `${partner}n`, dims: { region: 'north' } },
        ]);
      await f.amend(agreementFile(['a', 'b'], 3, [v2]), 'a', 'b');
      // Under the version without regions, b's change is released in weeks, judged without any
      // breakdown by region; the week holds points that carry a region from the first version.
      await f.push('b', 'regions', [{ day: '2026-11-10', subjects: 3, value: () => 7, tag: 'bplain' }]);
      await f.amend(agreementFile(['a', 'b'], 3, [v1]), 'a', 'b');
      const range = '&from=2026-11-09&to=2026-11-15';
      const byRegion = await f.get(`/v1/kpis/regions/series?grain=week&by=region${range}`, 'a');
      expect(byRegion.cells.length).toBeGreaterThan(0);
      for (const c of byRegion.cells) expect(c).toMatchObject({ state: 'suppressed', reasonCode: 'version' });
      for (const by of ['none', 'partner'])
        for (const c of (await f.get(`/v1/kpis/regions/series?grain=week&by=${by}${range}`, 'a')).cells)
          expect(c, by).toMatchObject({ state: 'ok' });
    } finally {
      await f.close();
    }
  });

  it('months after a version that added days: a month holding days that version withheld is withheld too', async () => {
    // Weeks; then days and weeks (the days over the points so far withheld); then months too.
    // Before: b's week of 26 October (72) kept from the first version, minus its October (30)
    // shown by the third, was its one point on Sunday 1 November, 42 — a day never served.
    const weeks: KpiDef = { id: 'stacked', measure: 'sum', grains: ['week'] };
    const days: KpiDef = { ...weeks, grains: ['day', 'week'] };
    const months: KpiDef = { ...weeks, grains: ['day', 'week', 'month'] };
    const f = await Family.start(agreementFile(['a', 'b'], 3, [weeks]));
    try {
      await f.push('a', 'stacked', [{ day: '2026-10-26', subjects: 3, value: () => 1, tag: 'a' }]);
      await f.push('b', 'stacked', [
        { day: '2026-10-26', subjects: 3, value: () => 10, tag: 'b' },
        { day: '2026-11-01', subjects: 1, value: () => 42, tag: 'one' },
      ]);
      const served = await f.readAll('a', weeks, '2026-10-01', '2026-11-30');
      await f.amend(agreementFile(['a', 'b'], 3, [days]), 'a', 'b');
      served.push(...(await f.readAll('a', days, '2026-10-01', '2026-11-30')));
      await f.amend(agreementFile(['a', 'b'], 3, [months]), 'a', 'b');
      const now = await f.readAll('a', months, '2026-10-01', '2026-11-30');
      served.push(...now);
      for (const c of now.filter((x) => x.grain === 'month'))
        expect(c, `${c.period} ${c.by} ${c.group}`).toMatchObject({ state: 'suppressed' });
      expect(now.filter((x) => x.grain === 'month' && x.reason === 'version').length).toBeGreaterThan(0);
      expect(leaks('sum', f.points('stacked'), served, 'a', 3, { changes: true })).toEqual([]);
    } finally {
      await f.close();
    }
    // Months added where days were served from the start withhold nothing.
    const g = await Family.start(agreementFile(['a', 'b'], 3, [days]));
    try {
      for (const partner of ['a', 'b'])
        await g.push(partner, 'stacked', [{ day: '2026-10-26', subjects: 3, value: () => 5, tag: partner }]);
      await g.amend(agreementFile(['a', 'b'], 3, [months]), 'a', 'b');
      const october = await g.get('/v1/kpis/stacked/series?grain=month&from=2026-10-01&to=2026-10-31', 'a');
      expect(october.cells).toEqual([expect.objectContaining({ state: 'ok', value: 30 })]);
    } finally {
      await g.close();
    }
  });

  for (const v2 of ['p90', 'sum'] as const)
    it(`a measure changed (p50 → ${v2}): every period over the points from before is withheld`, async () => {
      // b's day: three subjects, 17, 42 and 73, k = 3; its median, 42, is served. Before, the new
      // measure read the same points another way (a seventh review): the p90, 66.8, is
      // x2 + 0.8 (x3 − x2), the third value; the sum, 132, less the median and the lowest (one
      // move of the reader's own points found 17) is the third value too.
      const v1: KpiDef = { id: 'spread', measure: 'p50', grains: ['day'] };
      const f = await Family.start(agreementFile(['a', 'b'], 3, [v1]));
      try {
        const values = [17, 42, 73];
        await f.push('b', 'spread', [{ day: '2026-11-18', subjects: 3, value: (i) => values[i]!, tag: 'b' }]);
        const day = async () =>
          cellOf(
            await f.get('/v1/kpis/spread/series?grain=day&by=partner&from=2026-11-18&to=2026-11-18', 'a'),
            '2026-11-18',
            'b',
          );
        expect(await day()).toMatchObject({ state: 'ok', value: 42 });
        await f.amend(agreementFile(['a', 'b'], 3, [{ ...v1, measure: v2 }]), 'a', 'b');
        expect(await day()).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'version' });
        // What lands from the version on is served under the new measure.
        await f.push('b', 'spread', [{ day: '2026-11-19', subjects: 3, value: () => 10, tag: 'b2' }]);
        const next = await f.get('/v1/kpis/spread/series?grain=day&by=partner&from=2026-11-19&to=2026-11-19', 'a');
        expect(cellOf(next, '2026-11-19', 'b')).toMatchObject({ state: 'ok', value: v2 === 'sum' ? 30 : 10 });
      } finally {
        await f.close();
      }
    });

  it('a grain dropped: what its dominated cell protected stays withheld, though no rule of the new version needs it', async () => {
    // Days and weeks, dominance 60 %, k = 3, three partners. Round one: every partner three
    // subjects on Monday (10 each) and Tuesday (100 each). Round two, on Monday, settled in one
    // step: a −30, b +30, c −30, a third each (no partner dominates the change), which leaves b
    // with all of Monday's sum: Monday is dominated, and b's points there protect its week. A
    // version keeping weeks only judges no day: before, b's week (360) was served, and minus b's
    // Tuesday kept from the version before (300) it was b's dominated Monday, 60 (a sixth review).
    const v1: KpiDef = { id: 'net', measure: 'sum', grains: ['day', 'week'], dominance: 60 };
    const v2: KpiDef = { ...v1, grains: ['week'] };
    const f = await Family.start(agreementFile(['a', 'b', 'c'], 3, [v1]));
    try {
      const [mon, tue] = ['2026-11-09', '2026-11-10'];
      const push = (p: string, rows: Parameters<Family['push']>[2]) => () => f.push(p, 'net', rows);
      const round = (rows: (p: string) => Parameters<Family['push']>[2]) =>
        landAroundHeldStep(f.t.room.duck, push('a', rows('a')), [push('b', rows('b')), push('c', rows('c'))]);
      await round((p) => [
        { day: mon, subjects: 3, value: () => 10, tag: `${p}1` },
        { day: tue, subjects: 3, value: () => 100, tag: `${p}2` },
      ]);
      await round((p) => [{ day: mon, subjects: 3, value: () => (p === 'b' ? 10 : -10), tag: `${p}3` }]);
      const range = '&from=2026-11-09&to=2026-11-15';
      const days = await f.get(`/v1/kpis/net/series?grain=day&by=partner${range}`, 'a');
      expect(cellOf(days, tue, 'b')).toMatchObject({ state: 'ok', value: 300 });
      expect(cellOf(await f.get(`/v1/kpis/net/series?grain=day${range}`, 'a'), mon, null)).toMatchObject({
        reasonCode: 'dominance',
      });
      const weeks = () => f.get(`/v1/kpis/net/series?grain=week&by=partner${range}`, 'a');
      expect(cellOf(await weeks(), mon, 'b')).toMatchObject({ state: 'suppressed', reasonCode: 'protects' });
      await f.amend(agreementFile(['a', 'b', 'c'], 3, [v2]), 'a', 'b', 'c');
      expect(cellOf(await weeks(), mon, 'b')).toMatchObject({
        state: 'suppressed',
        value: null,
        reasonCode: 'version',
      });
      // The week total too: a's and c's weeks are their own, and b's is the total less them.
      expect(cellOf(await f.get(`/v1/kpis/net/series?grain=week${range}`, 'a'), mon, null)).toMatchObject({
        state: 'suppressed',
        reasonCode: 'version',
      });
    } finally {
      await f.close();
    }
  });

  it('a new time zone: a day its move changed is withheld, though the part that moved reached k', async () => {
    // UTC, k = 3. b's Wednesday 11 November: three subjects (30); then a change of four, released
    // — three at 23:30Z (20 each) and one at noon (42). Berlin moves the three to the 12th: a
    // part of three leaving, which the rules allow. Before: b's 11th after the change (72) against
    // its value before the release (30) was the one point that stayed, 42.
    const kpi: KpiDef = { id: 'zoned', measure: 'sum', grains: ['day'] };
    const file = agreementFile(['a', 'b'], 3, [kpi]);
    const f = await Family.start(file);
    const push = async (partner: string, rows: { at: string; n: number; value: number; tag: string }[]) => {
      const res = await fetch(`${f.t.url}/v1/points`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await f.t.token(partner, 'ingest')}`,
          'content-type': 'application/x-ndjson',
        },
        body: ndjson(
          rows.flatMap((r) =>
            Array.from({ length: r.n }, (_, i) => ({
              kpi: 'zoned',
              at: r.at,
              value: r.value,
              subject: `${r.tag}-${i}`,
            })),
          ),
        ),
      });
      expect(res.status).toBe(202);
    };
    try {
      await push('a', [{ at: '2026-11-11T12:00:00Z', n: 3, value: 1, tag: 'a' }]);
      await push('b', [{ at: '2026-11-11T12:00:00Z', n: 3, value: 10, tag: 'b' }]);
      const day = async (partner: string) =>
        cellOf(
          await f.get('/v1/kpis/zoned/series?grain=day&by=partner&from=2026-11-11&to=2026-11-12', partner),
          '2026-11-11',
          'b',
        );
      expect(await day('a')).toMatchObject({ state: 'ok', value: 30 });
      await push('b', [
        { at: '2026-11-11T23:30:00Z', n: 3, value: 20, tag: 'late' },
        { at: '2026-11-11T12:00:00Z', n: 1, value: 42, tag: 'one' },
      ]);
      expect(await day('a')).toMatchObject({ state: 'ok', value: 132 });
      writeFileSync(file, readFileSync(file, 'utf8').replace('timezone: UTC', 'timezone: Europe/Berlin'));
      await f.amend(file, 'a', 'b');
      expect(await day('a')).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'zone' });
    } finally {
      await f.close();
    }
  });

  it('a new time zone: a week whose released point a pending one joins is withheld, though no released point moved', async () => {
    // Weeks only, UTC, k = 3. b's one batch: one subject on Monday 9 November at 08:00Z (42),
    // three on Tuesday (10 each), released in a week of four; one on Sunday 8 November at 23:30Z
    // (5), alone in its week and pending. Under UTC+14 the Sunday point joins the Monday point's
    // atom, pending as a whole: before, the week was served held at 30 against 72 kept from UTC,
    // the one point, 42 (a sixth review).
    const kpi: KpiDef = { id: 'joined', measure: 'sum', grains: ['week'] };
    const file = agreementFile(['a', 'b'], 3, [kpi]);
    const f = await Family.start(file);
    const push = async (partner: string, rows: { at: string; value: number; subject: string }[]) => {
      const res = await fetch(`${f.t.url}/v1/points`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await f.t.token(partner, 'ingest')}`,
          'content-type': 'application/x-ndjson',
        },
        body: ndjson(rows.map((r) => ({ kpi: 'joined', ...r }))),
      });
      expect(res.status).toBe(202);
    };
    const week = async () =>
      cellOf(
        await f.get('/v1/kpis/joined/series?grain=week&by=partner&from=2026-11-02&to=2026-11-15', 'a'),
        '2026-11-09',
        'b',
      );
    try {
      await push(
        'a',
        [0, 1, 2].map((i) => ({ at: '2026-11-09T08:00:00Z', value: 1, subject: `a${i}` })),
      );
      await push('b', [
        { at: '2026-11-09T08:00:00Z', value: 42, subject: 'one' },
        ...[0, 1, 2].map((i) => ({ at: '2026-11-10T08:00:00Z', value: 10, subject: `t${i}` })),
        { at: '2026-11-08T23:30:00Z', value: 5, subject: 'late' },
      ]);
      expect(await week()).toMatchObject({ state: 'ok', value: 72 });
      writeFileSync(file, readFileSync(file, 'utf8').replace('timezone: UTC', 'timezone: Pacific/Kiritimati'));
      await f.amend(file, 'a', 'b');
      expect(await week()).toMatchObject({ state: 'suppressed', value: null, reasonCode: 'zone' });
    } finally {
      await f.close();
    }
  });
});
