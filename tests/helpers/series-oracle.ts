/**
 * An independent oracle for GET /v1/kpis/{kpi}/series. Points are generated from a seeded
 * PRNG around the hard cases (DST nights, ISO week 53, month ends in CET/CEST, the leap day,
 * repeated subjects, points without a dimension, small cells, complementary suppression),
 * POSTed through the listening server by both partners, and every agreed measure × grain ×
 * breakdown is compared with cells computed in plain TypeScript (tests/helpers/oracle.ts),
 * in JSON, CSV and Arrow, for both partners' analysts, at the latest and at earlier snapshots.
 * Arrow carries a withheld value as null, as JSON does, and its schema must not depend on the
 * cells (see the 'Arrow: …schema' test).
 *
 * Each agreement's suite is its own test file (tests/integration/query-oracle-*.test.ts), so
 * the two rooms run side by side.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataType, tableFromIPC, type Table } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from '../../services/governance/token-repository.js';
import { ndjson, type TestPoint } from './points.js';
import { startTestRoom, type TestRoom } from './test-room.js';
import {
  canonical,
  expectedCells,
  isoWithOffset,
  localDate,
  normaliseCells,
  periodStart,
  prng,
  sha256Hex,
  type Grain,
  type Measure,
  type OracleCell,
  type OraclePoint,
} from './oracle.js';
import { timeout } from './timeouts.js';

const TZ = 'Europe/Berlin';
const PARTNERS = ['acme', 'globex'] as const;
type Partner = (typeof PARTNERS)[number];
const ARROW = 'application/vnd.apache.arrow.stream';

/** What the oracle needs to know about one KPI of an agreement, written out by hand. */
export interface KpiSpec {
  id: string;
  measure: Measure;
  unit: string;
  grains: Grain[];
  /** Breakdowns the agreement allows: none, partner (per_partner), and dimensions. */
  bys: string[];
  /** Agreed values of the region dimension, if the KPI has one. */
  regions?: string[];
  /** max(kpi, defaults, every partner): computed here from the YAML by hand. */
  minGroupSize: number;
  /** The KPI's `counts` (default none: cells carry n: null). */
  counts?: 'exact' | 'none';
  /** A sum KPI's dominance rule in percent. */
  dominance?: number;
  /** Points per partner around one anchor instant: [min, max]. */
  size: [number, number];
  value: (r: () => number) => number;
  /** need_to_know: read with tokens named in the list. */
  needToKnow?: Record<Partner, string>;
}

// -------------------------------------------------------------------------------------------
// The hard cases: instants (UTC) whose local (Europe/Berlin) date, week or month is tricky.
// -------------------------------------------------------------------------------------------
const ANCHORS = [
  // ISO week 53 of 2020 is 2020-12-28 .. 2021-01-03.
  '2020-12-27T22:30:00Z', // local Sun 27th 23:30 → week 2020-12-21
  '2020-12-27T23:30:00Z', // local Mon 28th 00:30 → week 2020-12-28 (UTC date differs)
  '2020-12-31T12:00:00Z', // week 2020-12-28, month 2020-12-01
  '2020-12-31T22:30:00Z', // local 31st 23:30 → December
  '2020-12-31T23:30:00Z', // local 2021-01-01 00:30 → January, still week 2020-12-28
  '2021-01-02T12:00:00Z', // week 2020-12-28, month 2021-01-01
  '2021-01-03T22:30:00Z', // local Sun 3rd 23:30 → week 2020-12-28
  '2021-01-03T23:30:00Z', // local Mon 2021-01-04 00:30 → week 2021-01-04
  // The leap day.
  '2024-02-28T22:30:00Z', // local 28th 23:30
  '2024-02-28T23:30:00Z', // local 29th 00:30
  '2024-02-29T12:00:00Z',
  '2024-02-29T23:30:00Z', // local 2024-03-01 00:30 → March
  '2024-03-01T08:00:00Z',
  // Autumn DST 2025: CEST → CET at 2025-10-26T01:00Z (a Sunday, 25 hours long locally).
  '2025-10-25T21:30:00Z', // local Sat 25th 23:30 CEST
  '2025-10-25T22:30:00Z', // local Sun 26th 00:30 CEST (UTC date differs)
  '2025-10-26T00:30:00Z', // local 02:30 CEST (first 02:30)
  '2025-10-26T01:30:00Z', // local 02:30 CET (second 02:30)
  '2025-10-26T22:30:00Z', // local Sun 26th 23:30 CET
  '2025-10-26T23:30:00Z', // local Mon 27th 00:30 CET → next week
  '2025-10-31T22:30:00Z', // local 31st 23:30 CET → October
  '2025-10-31T23:30:00Z', // local 2025-11-01 00:30 → November
  // Spring DST 2026: CET → CEST at 2026-03-29T01:00Z (a Sunday, 23 hours long locally).
  '2026-02-28T23:30:00Z', // local 2026-03-01 00:30 CET → March
  '2026-03-28T22:30:00Z', // local Sat 28th 23:30 CET
  '2026-03-28T23:30:00Z', // local Sun 29th 00:30 CET (UTC date differs)
  '2026-03-29T00:30:00Z', // local 01:30 CET
  '2026-03-29T01:30:00Z', // local 03:30 CEST
  '2026-03-29T21:30:00Z', // local Sun 29th 23:30 CEST
  '2026-03-29T22:30:00Z', // local Mon 30th 00:30 CEST → next week (UTC date differs)
  '2026-03-31T21:30:00Z', // local 31st 23:30 CEST → March
  '2026-03-31T22:30:00Z', // local 2026-04-01 00:30 CEST → April
  // Recent weeks, up to "today" (the clock is 2026-11-23T12:00Z, a Monday).
  '2026-11-16T09:00:00Z',
  '2026-11-18T15:00:00Z',
  '2026-11-22T22:30:00Z', // local Sun 22nd 23:30 → week 2026-11-16
  '2026-11-22T23:30:00Z', // local Mon 23rd 00:30 → week 2026-11-23
  '2026-11-23T10:30:00Z',
];

/**
 * Exact period boundaries (local midnights, most of them a query window's first or last
 * instant): each gets points at the boundary itself and one millisecond before it.
 */
const BOUNDARIES = [
  '2020-11-30T23:00:00Z', // 2020-12-01 00:00 CET: month from of the first window
  '2020-12-27T23:00:00Z', // Mon 2020-12-28 00:00: ISO week 53 starts
  '2020-12-29T23:00:00Z', // 2020-12-30 00:00: day from of the first window
  '2020-12-31T23:00:00Z', // 2021-01-01 00:00: month and year change inside week 53
  '2021-01-03T23:00:00Z', // Mon 2021-01-04 00:00: week 53 ends
  '2021-01-31T23:00:00Z', // 2021-02-01 00:00: month end of the first window
  '2024-01-31T23:00:00Z', // 2024-02-01 00:00: month from of the third window
  '2024-02-25T23:00:00Z', // Mon 2024-02-26 00:00: week from of the third window
  '2024-02-28T23:00:00Z', // 2024-02-29 00:00: the leap day starts
  '2024-02-29T23:00:00Z', // 2024-03-01 00:00: the leap day ends
  '2024-03-01T23:00:00Z', // 2024-03-02 00:00: day end of the second window
  '2024-03-03T23:00:00Z', // Mon 2024-03-04 00:00: week end of the second window
  '2024-03-31T22:00:00Z', // 2024-04-01 00:00 CEST (DST began that morning): month end
  '2025-08-31T22:00:00Z', // 2025-09-01 00:00 CEST
  '2025-09-30T22:00:00Z', // 2025-10-01 00:00 CEST: month from of the fourth window
  '2025-10-19T22:00:00Z', // Mon 2025-10-20 00:00 CEST: week from of the fourth window
  '2025-10-25T22:00:00Z', // 2025-10-26 00:00 CEST: the 25-hour day starts
  '2025-10-26T23:00:00Z', // Mon 2025-10-27 00:00 CET: the 25-hour day (and its week) ends
  '2025-10-31T23:00:00Z', // 2025-11-01 00:00 CET
  '2026-02-28T23:00:00Z', // 2026-03-01 00:00 CET: month from of the fifth window
  '2026-03-28T23:00:00Z', // 2026-03-29 00:00 CET: the 23-hour day starts
  '2026-03-29T22:00:00Z', // Mon 2026-03-30 00:00 CEST: the 23-hour day (and its week) ends
  '2026-03-30T22:00:00Z', // 2026-03-31 00:00 CEST: day end of the fifth window
  '2026-03-31T22:00:00Z', // 2026-04-01 00:00 CEST
  '2026-04-05T22:00:00Z', // Mon 2026-04-06 00:00 CEST: week end of the fifth window
  '2026-11-22T23:00:00Z', // Mon 2026-11-23 00:00: today starts
  '2026-11-23T12:05:00Z', // now + the 5-minute clock skew: the latest instant accepted
];

/** Query windows: from/to mid-period, so widening to whole periods matters; each ≤ 1830 days. */
const WINDOWS: [string, string][] = [
  ['2020-12-30', '2021-01-03'], // week 53 only at day grain; widened at week and month
  ['2020-12-31', '2024-03-01'], // year end to the leap day (month: to 2024-03-31)
  ['2024-02-29', '2026-11-23'], // leap day, both DST changes, today
  ['2025-10-26', '2025-10-26'], // one DST day; week → 10-20..10-26, month → October
  ['2026-03-30', '2026-03-30'], // the Monday after the spring change
];

const OFFSETS = [0, 0, 0, 60, 120, -300, 330, -90];

interface GenPoint {
  partner: Partner;
  point: TestPoint;
  atMs: number;
  /** 0 and 1 land first (snapshot A), 2 after the first round of reads. */
  batch: number;
}

function makePoint(
  r: () => number,
  partner: Partner,
  kpi: KpiSpec,
  atMs: number,
  subject: string,
  dims: Record<string, string> | undefined | 'empty',
  batch: number,
): GenPoint {
  const at = isoWithOffset(atMs, OFFSETS[Math.floor(r() * OFFSETS.length)]!);
  const point: TestPoint = { kpi: kpi.id, at, value: kpi.value(r), subject };
  if (dims === 'empty') point.dims = {};
  else if (dims) point.dims = dims;
  return { partner, point, atMs, batch };
}

/** Random clusters around every anchor, for every KPI and both partners. */
function generate(seed: number, kpis: readonly KpiSpec[]): GenPoint[] {
  const r = prng(seed);
  const out: GenPoint[] = [];
  ANCHORS.forEach((anchor, ai) => {
    const base = Date.parse(anchor);
    for (const kpi of kpis) {
      for (const partner of PARTNERS) {
        const [lo, hi] = kpi.size;
        const k = lo + Math.floor(r() * (hi - lo + 1));
        const pool = Math.max(1, Math.round(k * (0.6 + 0.4 * r())));
        for (let j = 0; j < k; j++) {
          // ±20 minutes (never across the hour the anchor sits in), with milliseconds.
          const atMs = base + Math.floor((r() * 2 - 1) * 20 * 60) * 1000 + Math.floor(r() * 1000);
          // The same raw subject strings at both partners: they must still count twice.
          const subject =
            r() < 0.12 ? `SHARED-${Math.floor(r() * 15)}` : `${kpi.id.toUpperCase()}-${ai}-${Math.floor(r() * pool)}`;
          let dims: Record<string, string> | undefined | 'empty';
          if (kpi.regions) {
            const d = r();
            dims =
              d < 0.05 ? 'empty' : d < 0.2 ? undefined : { region: kpi.regions[Math.floor(r() * kpi.regions.length)]! };
          }
          const batch = r() < 0.3 ? 2 : r() < 0.5 ? 0 : 1;
          out.push(makePoint(r, partner, kpi, atMs, subject, dims, batch));
        }
      }
    }
  });
  BOUNDARIES.forEach((boundary, bi) => {
    const base = Date.parse(boundary);
    for (const kpi of kpis) {
      for (const partner of PARTNERS) {
        const k = 1 + Math.floor(r() * 3);
        for (let j = 0; j < k; j++) {
          const atMs = base - (r() < 0.5 ? 1 : 0);
          const subject = `${kpi.id.toUpperCase()}-B${bi}-${Math.floor(r() * 3)}`;
          const dims =
            kpi.regions && r() < 0.8 ? { region: kpi.regions[Math.floor(r() * kpi.regions.length)]! } : undefined;
          const batch = r() < 0.3 ? 2 : r() < 0.5 ? 0 : 1;
          out.push(makePoint(r, partner, kpi, atMs, subject, dims, batch));
        }
      }
    }
  });
  // ISO week 53 of 2020, dense for the first KPI: every part of every day (each region, and none)
  // has more than k subjects, so the week is disclosed although the clusters around it hold
  // small parts — the linked-cell rule withholds a coarser cell only for the small parts inside it.
  const dense = kpis.find((k) => k.grains.includes('day')) ?? kpis[0]!;
  for (let d = Date.parse('2020-12-28T11:00:00Z'); d <= Date.parse('2021-01-03T11:00:00Z'); d += 86_400_000) {
    for (const partner of PARTNERS) {
      for (const region of [...(dense.regions ?? []), undefined]) {
        // j = -1 repeats subject 0: a disclosed cell where one subject has two points.
        for (let j = -1; j <= dense.minGroupSize; j++) {
          const subject = `DENSE-${d}-${region ?? 'none'}-${Math.max(j, 0)}`;
          const dims = region === undefined ? undefined : { region };
          out.push(makePoint(r, partner, dense, d + (j + 1) * 1000, subject, dims, 0));
        }
      }
    }
  }
  return out;
}

/** Hand-made cells: complementary suppression by partner and by region, one subject many times, and cross-partner subjects. */
function crafted(seed: number, avgKpi: KpiSpec, otherKpi: KpiSpec): GenPoint[] {
  const r = prng(seed);
  const out: GenPoint[] = [];
  const at = (iso: string, i: number) => Date.parse(iso) + i * 60_000;
  const north = { region: 'north' };
  const south = { region: 'south' };
  // Day 1: acme 7 subjects (A-1 three times), globex 3 → by partner globex small, acme complementary.
  for (let i = 0; i < 6; i++)
    out.push(makePoint(r, 'acme', avgKpi, at('2026-11-10T09:00:00Z', i), `CRAFT-A-${i}`, north, 0));
  for (let i = 0; i < 2; i++)
    out.push(makePoint(r, 'acme', avgKpi, at('2026-11-10T11:00:00Z', i), 'CRAFT-A-1', north, 1));
  out.push(makePoint(r, 'acme', avgKpi, at('2026-11-10T12:00:00Z', 0), 'CRAFT-A-7', undefined, 0));
  for (let i = 0; i < 3; i++)
    out.push(makePoint(r, 'globex', avgKpi, at('2026-11-10T13:00:00Z', i), `CRAFT-G-${i}`, south, 0));
  // Day 2: by region null 2 (small), north 6, south 9 → north (the smaller visible) goes too.
  for (let i = 0; i < 6; i++)
    out.push(makePoint(r, 'acme', avgKpi, at('2026-11-11T09:00:00Z', i), `CRAFT-N-${i % 4}`, north, 0));
  for (let i = 0; i < 2; i++)
    out.push(makePoint(r, 'globex', avgKpi, at('2026-11-11T09:30:00Z', i), `CRAFT-N-${i}`, north, 1));
  for (let i = 0; i < 5; i++)
    out.push(makePoint(r, 'acme', avgKpi, at('2026-11-11T10:00:00Z', i), `CRAFT-S-${i}`, south, 1));
  for (let i = 0; i < 4; i++)
    out.push(makePoint(r, 'globex', avgKpi, at('2026-11-11T11:00:00Z', i), `CRAFT-S-${i}`, south, 0));
  for (let i = 0; i < 2; i++)
    out.push(makePoint(r, 'globex', avgKpi, at('2026-11-11T12:00:00Z', i), `CRAFT-X-${i}`, undefined, 0));
  // Day 3: the same three raw subjects at both partners: 6 subjects combined, 3 each.
  for (const partner of PARTNERS) {
    for (let i = 0; i < 3; i++)
      out.push(
        makePoint(
          r,
          partner,
          otherKpi,
          at('2026-11-12T10:00:00Z', i),
          `CRAFT-BOTH-${i}`,
          otherKpi.regions ? north : undefined,
          0,
        ),
      );
  }
  // Day 4: subjects that differ only in case, white space or accents are distinct subjects.
  ['Case', 'case', 'CASE', 'case ', ' case', 'cäse', 'case\u{1F600}'].forEach((subject, i) =>
    out.push(makePoint(r, 'acme', avgKpi, at('2026-11-13T10:00:00Z', i), subject, north, 0)),
  );
  // Late arrivals (second round) on a day that already has data: the snapshots must differ.
  for (let i = 0; i < 6; i++)
    out.push(makePoint(r, 'globex', avgKpi, at('2026-11-10T15:00:00Z', i), `CRAFT-LATE-${i}`, south, 2));
  return out;
}

// -------------------------------------------------------------------------------------------
// The demo agreement, transcribed by hand (fixtures/demo-agreement.yaml).
// -------------------------------------------------------------------------------------------
const oneDecimal = (lo: number, hi: number) => (r: () => number) => Math.round((lo + r() * (hi - lo)) * 10) / 10;
const integer = (lo: number, hi: number) => (r: () => number) => lo + Math.floor(r() * (hi - lo + 1));
const binary = (p: number) => (r: () => number) => (r() < p ? 1 : 0);
const regions = ['north', 'south'];

export const DEMO_KPIS: KpiSpec[] = [
  {
    id: 'customer_value',
    measure: 'avg',
    unit: 'score',
    grains: ['week', 'month'],
    bys: ['none', 'partner', 'region'],
    regions,
    minGroupSize: 5,
    counts: 'exact',
    size: [2, 9],
    value: oneDecimal(0, 10),
  },
  {
    id: 'lead_time',
    measure: 'p50',
    unit: 'hours',
    grains: ['day', 'week', 'month'],
    bys: ['none', 'partner', 'region'],
    regions,
    minGroupSize: 5,
    size: [2, 9],
    value: (r) => integer(1, 400)(r) + (r() < 0.3 ? 0.5 : 0),
  },
  {
    id: 'error_rate',
    measure: 'rate',
    unit: 'share',
    grains: ['day', 'week', 'month'],
    bys: ['none', 'partner', 'region'],
    regions,
    minGroupSize: 5,
    size: [2, 9],
    value: binary(0.2),
  },
  {
    id: 'compliance',
    measure: 'rate',
    unit: 'share',
    grains: ['week', 'month'],
    bys: ['none', 'partner'],
    minGroupSize: 5,
    size: [1, 6],
    value: binary(0.9),
    needToKnow: { acme: 'dpo@acme.example', globex: 'dpo@globex.example' },
  },
  {
    id: 'team_satisfaction',
    measure: 'avg',
    unit: 'score',
    grains: ['week', 'month'],
    bys: ['none', 'partner'],
    minGroupSize: 8,
    size: [2, 8],
    value: integer(1, 5),
  },
];

// -------------------------------------------------------------------------------------------
// An agreement of our own for the measures the demo does not have: sum, count, distinct,
// p90, p95; combined KPIs (twoPartyConsent); a partner threshold above the KPI's own.
// -------------------------------------------------------------------------------------------
export const OWN_AGREEMENT = `
partnership: { id: oracle-room, title: Oracle Room, timezone: Europe/Berlin }
partners:
  - { id: acme, name: Acme Logistics, minGroupSize: 4 }
  - { id: globex, name: Globex Freight }
defaults: { minGroupSize: 3 }
twoPartyConsent: true
steering:
  - { name: Chair, email: chair@example.org }
kpis:
  - id: parcels
    title: Parcels handled
    unit: parcels
    subject: depot
    measure: sum
    range: [0, 1000]
    grains: [day, week, month]
    dimensions: { region: [north, south] }
    disclosure: partnership
    breakdown: per_partner
    minGroupSize: 2
    counts: exact
    dominance: 80
    band: { lower: 0 }
    evaluate: { grain: week }
    freshness: { every: P1D, grace: PT6H }
    owners:
      acme: { name: Ana Amsel, email: ana@acme.example }
      globex: { name: Gus Gerber, email: gus@globex.example }
    escalation: { ackWithin: P2D }
  - id: stops
    title: Stops made
    unit: stops
    subject: route
    measure: count
    grains: [day, week, month]
    dimensions: { region: [north, south, east] }
    disclosure: partnership
    breakdown: combined
    counts: exact
    band: { lower: 0 }
    evaluate: { grain: day }
    freshness: { every: P1D, grace: PT6H }
    owners:
      acme: { name: Ana Amsel, email: ana@acme.example }
    escalation: { ackWithin: P2D }
  - id: drivers
    title: Active drivers
    unit: drivers
    subject: driver
    measure: distinct
    range: [0, 1]
    grains: [week, month]
    dimensions: { region: [north, south] }
    disclosure: partnership
    breakdown: per_partner
    minGroupSize: 6
    band: { lower: 1 }
    evaluate: { grain: month }
    freshness: { every: P7D, grace: P1D }
    owners:
      globex: { name: Gus Gerber, email: gus@globex.example }
    escalation: { ackWithin: P5D }
  - id: delay_p90
    title: Delay, 90th percentile
    unit: minutes
    subject: delivery
    measure: p90
    range: [0, 10000]
    grains: [day, week]
    dimensions: { region: [north, south] }
    disclosure: partnership
    breakdown: combined
    minGroupSize: 5
    band: { upper: 120 }
    evaluate: { grain: week }
    freshness: { every: P1D, grace: PT6H }
    owners:
      acme: { name: Otto Ops, email: ops@acme.example }
      globex: { name: Greta Ops, email: ops@globex.example }
    escalation: { ackWithin: P1D }
  - id: delay_p95
    title: Delay, 95th percentile
    unit: minutes
    subject: delivery
    measure: p95
    grains: [day, week, month]
    disclosure: partnership
    breakdown: per_partner
    minGroupSize: 2
    band: { upper: 180 }
    evaluate: { grain: day }
    freshness: { every: P1D, grace: PT6H }
    owners:
      acme: { name: Otto Ops, email: ops@acme.example }
      globex: { name: Greta Ops, email: ops@globex.example }
    escalation: { ackWithin: P1D }
`;

export const OWN_KPIS: KpiSpec[] = [
  {
    id: 'parcels',
    measure: 'sum',
    unit: 'parcels',
    grains: ['day', 'week', 'month'],
    bys: ['none', 'partner', 'region'],
    regions,
    minGroupSize: 4,
    counts: 'exact',
    dominance: 80,
    size: [1, 7],
    value: oneDecimal(0, 50),
  },
  {
    id: 'stops',
    measure: 'count',
    unit: 'stops',
    grains: ['day', 'week', 'month'],
    bys: ['none', 'region'],
    regions: ['north', 'south', 'east'],
    minGroupSize: 4,
    counts: 'exact',
    size: [1, 7],
    value: integer(-3, 30),
  },
  {
    id: 'drivers',
    measure: 'distinct',
    unit: 'drivers',
    grains: ['week', 'month'],
    bys: ['none', 'partner', 'region'],
    regions,
    minGroupSize: 6,
    size: [1, 6],
    value: () => 1,
  },
  {
    id: 'delay_p90',
    measure: 'p90',
    unit: 'minutes',
    grains: ['day', 'week'],
    bys: ['none', 'region'],
    regions,
    minGroupSize: 5,
    size: [1, 8],
    value: (r) => integer(0, 240)(r) + (r() < 0.5 ? 0.1 : 0),
  },
  {
    id: 'delay_p95',
    measure: 'p95',
    unit: 'minutes',
    grains: ['day', 'week', 'month'],
    bys: ['none', 'partner'],
    minGroupSize: 4,
    size: [1, 8],
    value: (r) => integer(0, 300)(r) + (r() < 0.5 ? 0.75 : 0),
  },
];

// -------------------------------------------------------------------------------------------
// HTTP
// -------------------------------------------------------------------------------------------
interface Got {
  status: number;
  headers: Headers;
  bytes: Buffer;
}

async function get(t: TestRoom, path: string, token: string, accept?: string): Promise<Got> {
  const res = await fetch(`${t.url}${path}`, {
    headers: { authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) },
  });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** Runs the tasks at most `limit` at a time, in order of the results. */
async function pool<T>(tasks: (() => Promise<T>)[], limit = 4): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) {
        const i = next++;
        results[i] = await tasks[i]!();
      }
    }),
  );
  return results;
}

/** Minimal RFC 4180 reader for the product's CSV (quoted fields, doubled quotes). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

interface Combo {
  kpi: KpiSpec;
  grain: Grain;
  by: string;
  from: string;
  to: string;
}

function combos(kpis: readonly KpiSpec[]): Combo[] {
  const out: Combo[] = [];
  for (const kpi of kpis)
    for (const grain of kpi.grains)
      for (const by of kpi.bys) for (const [from, to] of WINDOWS) out.push({ kpi, grain, by, from, to });
  return out;
}

const pathOf = (c: Combo, snapshot?: number) =>
  `/v1/kpis/${c.kpi.id}/series?grain=${c.grain}&from=${c.from}&to=${c.to}&by=${c.by}${snapshot === undefined ? '' : `&snapshot=${snapshot}`}`;
const label = (c: Combo, snapshot?: number) =>
  `${c.kpi.id} ${c.grain} by=${c.by} ${c.from}..${c.to}${snapshot === undefined ? '' : ` @${snapshot}`}`;
const cellKey = (c: { period: string; group: string | null }) => `${c.period}|${c.group ?? '∅'}`;

/** The kind of each Arrow column (a dictionary column counts as its values' kind). */
function arrowSchema(table: Table): Record<string, string> {
  const kind = (t: DataType): string =>
    DataType.isDictionary(t)
      ? kind(t.dictionary)
      : DataType.isUtf8(t) || DataType.isLargeUtf8(t)
        ? 'utf8'
        : DataType.isFloat(t)
          ? `float${t.precision === 2 ? 64 : t.precision === 1 ? 32 : 16}`
          : DataType.isInt(t)
            ? 'int'
            : DataType.isNull(t)
              ? 'null'
              : String(t);
  return Object.fromEntries(table.schema.fields.map((f) => [f.name, kind(f.type)]));
}

/** A short account of how two cell lists differ (the first few differences). */
function diffCells(expected: readonly OracleCell[], actual: readonly OracleCell[]): string {
  const e = new Map(expected.map((c) => [cellKey(c), c]));
  const a = new Map(actual.map((c) => [cellKey(c), c]));
  const lines: string[] = [];
  for (const [k, c] of e) if (!a.has(k)) lines.push(`missing ${k} ${canonical(c)}`);
  for (const [k, c] of a) if (!e.has(k)) lines.push(`extra ${k} ${canonical(c)}`);
  for (const [k, c] of e) {
    const x = a.get(k);
    if (x && canonical(x) !== canonical(c))
      lines.push(
        `${k}: expected ${canonical({ ...c, period: undefined, group: undefined })} got ${canonical({ ...x, period: undefined, group: undefined })}`,
      );
  }
  if (lines.length === 0)
    lines.push(
      `same cells, different order: expected ${expected.map(cellKey).join(' ')} got ${actual.map(cellKey).join(' ')}`,
    );
  return `${lines.length} difference(s): ${lines.slice(0, 4).join('; ')}${lines.length > 4 ? '; …' : ''}`;
}

// -------------------------------------------------------------------------------------------
// One room, one agreement: the whole oracle comparison.
// -------------------------------------------------------------------------------------------
interface Suite {
  t: TestRoom;
  points: OraclePoint[];
  analyst: Record<string, Record<Partner, string>>;
  snapshotA: number;
  snapshots: number[];
  /** JSON bytes of every combo read after the first round, before the second landed. */
  atA: Map<string, { combo: Combo; got: Got }>;
  /** The Arrow schema of every series read, by request. */
  arrowSchemas: { at: string; schema: Record<string, string> }[];
}

export function defineOracleSuite(
  name: string,
  opts: {
    kpis: KpiSpec[];
    seed: number;
    agreementYaml?: string;
    crafted?: [string, string];
    env?: Record<string, string>;
  },
) {
  describe(name, () => {
    const s = { arrowSchemas: [] } as unknown as Suite;
    let tmp: string | undefined;
    const all = combos(opts.kpis);
    const oracle = (c: Combo, snapshot: number, withDominance = true) =>
      expectedCells(s.points, {
        kpi: c.kpi.id,
        measure: c.kpi.measure,
        grain: c.grain,
        from: c.from,
        to: c.to,
        by: c.by,
        snapshot,
        minGroupSize: c.kpi.minGroupSize,
        timezone: TZ,
        grains: c.kpi.grains,
        dimensions: c.kpi.regions ? ['region'] : [],
        threePartners: false, // two partners: every combined KPI here has twoPartyConsent
        counts: c.kpi.counts ?? 'none',
        dominance: c.kpi.dominance === undefined || !withDominance ? null : c.kpi.dominance / 100,
      });
    const tokenFor = (c: Combo, partner: Partner) => s.analyst[c.kpi.id]![partner];

    beforeAll(async () => {
      let agreementFile: string | undefined;
      if (opts.agreementYaml) {
        tmp = mkdtempSync(join(tmpdir(), 'parity-oracle-'));
        agreementFile = join(tmp, 'agreement.yaml');
        writeFileSync(agreementFile, opts.agreementYaml);
      }
      s.t = await startTestRoom({
        ...(agreementFile ? { agreementFile } : {}),
        ...(opts.env ? { env: opts.env } : {}),
      });
      const t = s.t;
      s.analyst = {};
      for (const kpi of opts.kpis) {
        const per = {} as Record<Partner, string>;
        for (const partner of PARTNERS) {
          const named = kpi.needToKnow?.[partner];
          per[partner] = named
            ? (
                await createToken(
                  t.room.control.db,
                  { partnerId: partner, role: 'analyst', name: named },
                  t.clock.now(),
                )
              ).token
            : await t.token(partner, 'analyst');
        }
        s.analyst[kpi.id] = per;
      }
      const byId = new Map(opts.kpis.map((k) => [k.id, k]));
      const gen = [
        ...generate(opts.seed, opts.kpis),
        ...(opts.crafted ? crafted(opts.seed + 1, byId.get(opts.crafted[0])!, byId.get(opts.crafted[1])!) : []),
      ];
      s.points = [];
      s.snapshots = [];
      const land = async (batch: number) => {
        for (const partner of PARTNERS) {
          const mine = gen.filter((g) => g.partner === partner && g.batch === batch);
          const res = await fetch(`${t.url}/v1/points`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${await t.token(partner, 'ingest')}`,
              'content-type': 'application/x-ndjson',
            },
            body: ndjson(mine.map((g) => g.point)),
          });
          const receipt = (await res.json()) as { snapshot: number; accepted: number; rejected: number };
          expect(res.status, JSON.stringify(receipt).slice(0, 500)).toBe(202);
          expect(receipt.accepted).toBe(mine.length);
          s.snapshots.push(receipt.snapshot);
          for (const g of mine)
            s.points.push({
              partner,
              kpi: g.point.kpi,
              atMs: g.atMs,
              value: g.point.value,
              subject: g.point.subject,
              ...(g.point.dims ? { dims: g.point.dims } : {}),
              snapshot: receipt.snapshot,
            });
        }
      };
      // With rollups on, series are read from them once they are current: wait, so the reads at
      // A go through the rollup and the later reads of ?snapshot=A (older: points) must match them.
      const rolledUp = async () => {
        const r = t.app.reader.rollups;
        if (!r) return;
        await r.loop.idle();
        expect(r.current).toBe(true);
      };
      await land(0);
      await land(1);
      await rolledUp();
      s.snapshotA = Math.max(...s.snapshots);
      expect(t.room.duck.snapshots.latest).toBe(s.snapshotA);
      const got = await pool(all.map((c) => () => get(t, pathOf(c), tokenFor(c, 'acme'))));
      s.atA = new Map(all.map((c, i) => [pathOf(c), { combo: c, got: got[i]! }]));
      await land(2);
      await rolledUp();
    }, timeout(240_000)); // three rounds landed and rolled up over six years of sparse points: slow on a busy 2-core machine

    afterAll(async () => {
      await s.t?.close();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it('the generated points reach every hard case (checked on the oracle alone)', () => {
      const latest = Math.max(...s.snapshots);
      // Points whose UTC date is not their local date, around both DST changes and year/month ends.
      const shifted = s.points.filter((p) => new Date(p.atMs).toISOString().slice(0, 10) !== localDate(p.atMs, TZ));
      for (const day of [
        '2020-12-28',
        '2021-01-01',
        '2021-01-04',
        '2024-02-29',
        '2024-03-01',
        '2025-10-26',
        '2025-10-27',
        '2025-11-01',
        '2026-03-01',
        '2026-03-29',
        '2026-03-30',
        '2026-04-01',
        '2026-11-23',
      ]) {
        expect(
          shifted.some((p) => localDate(p.atMs, TZ) === day),
          day,
        ).toBe(true);
      }
      // ISO week 53 and the year end: both dates land in the week of 2020-12-28.
      expect(periodStart('2020-12-31', 'week')).toBe('2020-12-28');
      expect(periodStart('2021-01-02', 'week')).toBe('2020-12-28');
      expect(periodStart('2021-01-03', 'week')).toBe('2020-12-28');
      expect(periodStart('2021-01-04', 'week')).toBe('2021-01-04');
      expect(periodStart('2024-02-29', 'week')).toBe('2024-02-26');
      expect(localDate(Date.parse('2026-03-29T22:30:00Z'), TZ)).toBe('2026-03-30');
      expect(localDate(Date.parse('2025-10-25T22:30:00Z'), TZ)).toBe('2025-10-26');
      expect(localDate(Date.parse('2025-10-26T22:30:00Z'), TZ)).toBe('2025-10-26');
      // Points sit on both sides of every exact local midnight.
      for (const b of BOUNDARIES) {
        const ms = Date.parse(b);
        // A local midnight (the last entry is the ingest limit instead: now + 5 minutes).
        if (b !== '2026-11-23T12:05:00Z') expect(localDate(ms - 1, TZ), b).not.toBe(localDate(ms, TZ));
        expect(s.points.some((p) => p.atMs === ms) && s.points.some((p) => p.atMs === ms - 1), b).toBe(true);
      }
      // The expected series contain every kind of cell.
      const kinds = {
        fewSubjects: 0,
        protectsByPartner: 0,
        protectsByDimension: 0,
        protectsCoarserGrain: 0,
        nullGroupVisible: 0,
        repeatedSubjectVisible: 0,
        week53Visible: 0,
        leapDayVisible: 0,
        visibleAtThreshold: 0,
        // Late arrivals whose change does not pass yet (docs/privacy.md §3): shown at an earlier value.
        held: 0,
      };
      let dominated = 0;
      for (const c of all) {
        const cells = oracle(c, latest);
        for (const cell of cells) {
          if (cell.reasonCode === 'protects') {
            if (c.by === 'partner') kinds.protectsByPartner++;
            else if (c.by !== 'none') kinds.protectsByDimension++;
            if (c.grain !== 'day') kinds.protectsCoarserGrain++;
          } else if (cell.reasonCode === 'few_subjects') kinds.fewSubjects++;
          else if (cell.reasonCode === 'dominance') dominated++;
          if (cell.state === 'ok' && c.by !== 'none' && c.by !== 'partner' && cell.group === null)
            kinds.nullGroupVisible++;
          // A held cell shows a value too (its released points'), computed over the same hard case.
          if (cell.value !== null && c.grain === 'week' && cell.period === '2020-12-28') kinds.week53Visible++;
          if (cell.value !== null && c.grain === 'day' && cell.period === '2024-02-29') kinds.leapDayVisible++;
          if (cell.state === 'held') kinds.held++;
          if (cell.state === 'ok' && cell.subjects === c.kpi.minGroupSize) kinds.visibleAtThreshold++;
        }
        // A cell the dominance rule kept back: shown as it is without the rule, not with it.
        if (c.kpi.dominance !== undefined) {
          const without = new Map(oracle(c, latest, false).map((x) => [`${x.period}|${x.group}`, x.state]));
          for (const cell of cells)
            if (cell.state !== 'ok' && without.get(`${cell.period}|${cell.group}`) === 'ok') dominated++;
        }
        if (c.by === 'none' && c.grain === 'day') {
          for (const cell of cells) {
            if (cell.state !== 'ok') continue;
            const pts = s.points.filter((p) => p.kpi === c.kpi.id && localDate(p.atMs, TZ) === cell.period);
            if (pts.length > cell.subjects) kinds.repeatedSubjectVisible++;
          }
        }
      }
      for (const [k, v] of Object.entries(kinds)) expect(v, k).toBeGreaterThan(0);
      // Where a KPI sets a dominance rule, some cells are withheld or held back by it (the rule
      // applies to each change: a dominant change waits, and its cells are pending or held).
      if (opts.kpis.some((k) => k.dominance !== undefined)) expect(dominated, 'dominance').toBeGreaterThan(0);
    });

    for (const kpi of opts.kpis) {
      it(`${kpi.id} (${kpi.measure}): every grain × breakdown × window matches the oracle, in JSON (both partners), CSV and Arrow`, async () => {
        const t = s.t;
        const latest = Math.max(...s.snapshots);
        const mine = all.filter((c) => c.kpi === kpi);
        const problems: string[] = [];
        let checkedCells = 0;
        await pool(
          mine.map((c) => async () => {
            const path = pathOf(c);
            const [a, g, csv, arrow] = await Promise.all([
              get(t, path, tokenFor(c, 'acme')),
              get(t, path, tokenFor(c, 'globex')),
              get(t, path, tokenFor(c, 'acme'), 'text/csv'),
              get(t, path, tokenFor(c, 'acme'), ARROW),
            ]);
            const at = label(c);
            if (a.status !== 200)
              return void problems.push(`${at}: status ${a.status} ${String(a.bytes).slice(0, 200)}`);
            const text = a.bytes.toString('utf8');
            const body = JSON.parse(text) as Record<string, unknown> & { cells: OracleCell[]; digest: string };
            // Canonical bytes (keys sorted, no whitespace) and the digest of the cells.
            if (text !== canonical(body)) problems.push(`${at}: the body is not canonical JSON`);
            const digest = sha256Hex(canonical(body.cells));
            if (body.digest !== digest)
              problems.push(`${at}: digest ${body.digest} ≠ sha256(canonical(cells)) ${digest}`);
            if (a.headers.get('x-parity-digest') !== digest)
              problems.push(`${at}: x-parity-digest header ${a.headers.get('x-parity-digest')}`);
            if (a.headers.get('x-parity-snapshot') !== String(latest))
              problems.push(`${at}: x-parity-snapshot header ${a.headers.get('x-parity-snapshot')}`);
            const head = {
              kpi: c.kpi.id,
              measure: c.kpi.measure,
              unit: c.kpi.unit,
              grain: c.grain,
              by: c.by === 'none' ? null : c.by,
              from: c.from,
              to: c.to,
              snapshot: latest,
              agreementVersion: 1,
              minGroupSize: c.kpi.minGroupSize,
              dominance: c.kpi.dominance ?? null,
              approximate: false,
            };
            const { cells: _cells, digest: _digest, ...rest } = body;
            if (canonical(rest) !== canonical(head))
              problems.push(`${at}: head ${canonical(rest)} ≠ ${canonical(head)}`);
            // The cells, against the oracle.
            const expected = normaliseCells(oracle(c, latest));
            const actual = normaliseCells(body.cells);
            checkedCells += expected.length;
            if (canonical(actual) !== canonical(expected)) problems.push(`${at}: ${diffCells(expected, actual)}`);
            // The other partner's analyst: the same bytes.
            if (g.status !== 200 || !g.bytes.equals(a.bytes))
              problems.push(`${at}: globex's analyst got different bytes (status ${g.status})`);
            // CSV: the same cells.
            if (csv.status !== 200 || !(csv.headers.get('content-type') ?? '').startsWith('text/csv'))
              problems.push(`${at}: CSV status ${csv.status} type ${csv.headers.get('content-type')}`);
            else {
              const rows = parseCsv(csv.bytes.toString('utf8'));
              const [header, ...data] = rows;
              if (header?.join(',') !== 'period,group,value,n,state,reason_code,reason,as_of')
                problems.push(`${at}: CSV header ${header?.join(',')}`);
              const fromCsv: OracleCell[] = data.map((r) => {
                const cell: OracleCell = {
                  period: r[0]!,
                  group: r[1] === '' ? null : r[1]!,
                  value: r[2] === '' ? null : Number(r[2]),
                  n: r[3] === '' ? null : Number(r[3]),
                  state: r[4] as OracleCell['state'],
                };
                if (r[5] !== '' && r[5] !== undefined) cell.reasonCode = r[5];
                if (r[6] !== '' && r[6] !== undefined) cell.reason = r[6];
                if (r[7] !== '' && r[7] !== undefined) cell.asOf = Number(r[7]);
                return cell;
              });
              if (canonical(fromCsv) !== canonical(body.cells))
                problems.push(`${at}: CSV ≠ JSON: ${diffCells(body.cells, fromCsv)}`);
              if (csv.headers.get('x-parity-digest') !== digest)
                problems.push(`${at}: CSV x-parity-digest header differs`);
            }
            // Arrow: the same cells (a withheld value is null, as in JSON).
            if (arrow.status !== 200 || arrow.headers.get('content-type') !== ARROW)
              problems.push(`${at}: Arrow status ${arrow.status} type ${arrow.headers.get('content-type')}`);
            else {
              const table = tableFromIPC(arrow.bytes);
              s.arrowSchemas.push({ at, schema: arrowSchema(table) });
              const col = (name: string, i: number): unknown => table.getChild(name)?.get(i) ?? null;
              const num = (v: unknown) => (v === null ? null : Number(v));
              const fromArrow: OracleCell[] = [];
              for (let i = 0; i < table.numRows; i++) {
                const value = num(col('value', i));
                const cell: OracleCell = {
                  period: String(col('period', i)),
                  group: col('group', i) === null ? null : String(col('group', i)),
                  value,
                  n: num(col('n', i)),
                  state: col('state', i) as OracleCell['state'],
                };
                const code = col('reason_code', i);
                if (code !== null) cell.reasonCode = String(code);
                const reason = col('reason', i);
                if (reason !== null) cell.reason = String(reason);
                const asOf = col('as_of', i);
                if (asOf !== null) cell.asOf = Number(asOf);
                if (value !== null && Number.isNaN(value)) problems.push(`${at}: Arrow value NaN instead of null`);
                fromArrow.push(cell);
              }
              if (canonical(fromArrow) !== canonical(body.cells))
                problems.push(`${at}: Arrow ≠ JSON: ${diffCells(body.cells, fromArrow)}`);
            }
          }),
        );
        expect(
          problems.length,
          `${problems.length} of ${mine.length} requests differ:\n${problems.slice(0, 30).join('\n')}`,
        ).toBe(0);
        expect(checkedCells).toBeGreaterThan(0);
      });
    }

    it('Arrow: every series has the same typed schema (period, group, state, reason strings; value float64; n numeric), whatever its cells', async () => {
      // The empty series too: a client concatenating series must not meet a different schema.
      for (const kpi of opts.kpis) {
        const path = `/v1/kpis/${kpi.id}/series?grain=${kpi.grains[0]}&from=2022-06-01&to=2022-06-30`;
        const arrow = await get(s.t, path, s.analyst[kpi.id]!.acme, ARROW);
        expect(arrow.status).toBe(200);
        s.arrowSchemas.push({ at: `${kpi.id} empty`, schema: arrowSchema(tableFromIPC(arrow.bytes)) });
      }
      expect(s.arrowSchemas.length).toBeGreaterThan(opts.kpis.length);
      const wrong = new Map<string, string[]>();
      for (const { at, schema } of s.arrowSchemas) {
        const bad = Object.entries({
          period: 'utf8',
          group: 'utf8',
          value: 'float64',
          state: 'utf8',
          reason_code: 'utf8',
          reason: 'utf8',
          as_of: 'int',
        })
          .filter(([col, kind]) => schema[col] !== kind)
          .map(([col]) => `${col}: ${schema[col]}`);
        if (schema['n'] !== 'int' && schema['n'] !== 'float64') bad.push(`n: ${schema['n']}`);
        for (const b of bad) wrong.set(b, [...(wrong.get(b) ?? []), at]);
      }
      const report = [...wrong].map(([b, ats]) => `${b} in ${ats.length} series, e.g. ${ats[0]}`);
      expect(report, `Arrow columns of the wrong type:\n${report.join('\n')}`).toEqual([]);
      expect(new Set(s.arrowSchemas.map((x) => canonical(x.schema))).size).toBe(1);
    });

    it('read before the second round landed, every series matched the oracle at that snapshot', () => {
      const problems: string[] = [];
      for (const { combo: c, got } of s.atA.values()) {
        if (got.status !== 200) {
          problems.push(`${label(c)}: status ${got.status}`);
          continue;
        }
        const body = JSON.parse(got.bytes.toString('utf8')) as { snapshot: number; cells: OracleCell[] };
        if (body.snapshot !== s.snapshotA) problems.push(`${label(c)}: snapshot ${body.snapshot} ≠ ${s.snapshotA}`);
        const expected = normaliseCells(oracle(c, s.snapshotA));
        const actual = normaliseCells(body.cells);
        if (canonical(actual) !== canonical(expected)) problems.push(`${label(c)}: ${diffCells(expected, actual)}`);
      }
      expect(problems.length, problems.slice(0, 30).join('\n')).toBe(0);
    });

    it('?snapshot=N after more batches landed returns byte-identical JSON to the earlier response at N', async () => {
      const t = s.t;
      const entries = [...s.atA.values()];
      const again = await pool(
        entries.map(
          ({ combo }) =>
            () =>
              get(t, pathOf(combo, s.snapshotA), tokenFor(combo, 'globex')),
        ),
      );
      const problems: string[] = [];
      let changedSince = 0;
      const now = await pool(
        entries.map(
          ({ combo }) =>
            () =>
              get(t, pathOf(combo), tokenFor(combo, 'acme')),
        ),
      );
      entries.forEach(({ combo, got }, i) => {
        if (!again[i]!.bytes.equals(got.bytes))
          problems.push(
            `${label(combo, s.snapshotA)}: ${again[i]!.status} ${again[i]!.bytes.toString('utf8').slice(0, 160)}`,
          );
        if (!now[i]!.bytes.equals(got.bytes)) changedSince++;
      });
      expect(problems.length, problems.slice(0, 20).join('\n')).toBe(0);
      // The second round did change what the latest snapshot shows.
      expect(changedSince).toBeGreaterThan(entries.length / 4);
    });

    it('every earlier snapshot (and snapshot 0) matches the oracle restricted to the batches landed by then', async () => {
      const t = s.t;
      const problems: string[] = [];
      const picks = all.filter((c) => c.from === WINDOWS[2]![0] && (c.grain === 'day' || c.by !== 'none'));
      for (const snapshot of [0, ...s.snapshots]) {
        const got = await pool(picks.map((c) => () => get(t, pathOf(c, snapshot), tokenFor(c, 'acme'))));
        picks.forEach((c, i) => {
          const g = got[i]!;
          if (g.status !== 200) return void problems.push(`${label(c, snapshot)}: status ${g.status}`);
          const body = JSON.parse(g.bytes.toString('utf8')) as {
            snapshot: number;
            digest: string;
            cells: OracleCell[];
          };
          if (body.snapshot !== snapshot) problems.push(`${label(c, snapshot)}: snapshot ${body.snapshot}`);
          if (body.digest !== sha256Hex(canonical(body.cells))) problems.push(`${label(c, snapshot)}: digest`);
          const expected = normaliseCells(oracle(c, snapshot));
          if (snapshot === 0 && expected.length !== 0) problems.push('oracle: snapshot 0 must be empty');
          const actual = normaliseCells(body.cells);
          if (canonical(actual) !== canonical(expected))
            problems.push(`${label(c, snapshot)}: ${diffCells(expected, actual)}`);
        });
      }
      expect(problems.length, problems.slice(0, 30).join('\n')).toBe(0);
    });

    it('a range without points, and snapshot 0, are empty series in JSON, CSV and Arrow', async () => {
      const t = s.t;
      for (const kpi of opts.kpis) {
        for (const query of [
          `grain=${kpi.grains[0]}&from=2022-06-01&to=2022-06-30&by=${kpi.bys.at(-1)}`,
          `grain=${kpi.grains.at(-1)}&from=2024-02-29&to=2026-11-23&snapshot=0`,
        ]) {
          const path = `/v1/kpis/${kpi.id}/series?${query}`;
          const token = s.analyst[kpi.id]!.globex;
          const json = await get(t, path, token);
          expect(json.status, path).toBe(200);
          const body = JSON.parse(json.bytes.toString('utf8')) as { cells: unknown[]; digest: string };
          expect(body.cells, path).toEqual([]);
          expect(body.digest, path).toBe(sha256Hex('[]'));
          const csv = await get(t, path, token, 'text/csv');
          expect(csv.status, path).toBe(200);
          expect(csv.bytes.toString('utf8'), path).toBe('period,group,value,n,state,reason_code,reason,as_of\n');
          const arrow = await get(t, path, token, ARROW);
          expect(arrow.status, path).toBe(200);
          expect(tableFromIPC(arrow.bytes).numRows, path).toBe(0);
        }
      }
    });

    it('breakdowns and grains the agreement does not allow are refused', async () => {
      const t = s.t;
      for (const kpi of opts.kpis) {
        const token = s.analyst[kpi.id]!.acme;
        for (const grain of (['day', 'week', 'month'] as const).filter((g) => !kpi.grains.includes(g))) {
          expect(
            (await get(t, `/v1/kpis/${kpi.id}/series?grain=${grain}&from=2026-11-01&to=2026-11-20`, token)).status,
            `${kpi.id} ${grain}`,
          ).toBe(400);
        }
        if (!kpi.bys.includes('partner'))
          expect(
            (await get(t, `/v1/kpis/${kpi.id}/series?grain=${kpi.grains[0]}&by=partner`, token)).status,
            `${kpi.id} by=partner`,
          ).toBe(400);
        if (!kpi.bys.includes('region'))
          expect(
            (await get(t, `/v1/kpis/${kpi.id}/series?grain=${kpi.grains[0]}&by=region`, token)).status,
            `${kpi.id} by=region`,
          ).toBe(400);
      }
    });
  });
}
