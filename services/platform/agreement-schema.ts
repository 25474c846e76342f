import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import { canonicalDigest } from './canonical-json.js';
import type { Grain } from './calendar.js';
import { UNSTORABLE } from './text-rules.js';

const isoDuration = /^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$/;

/** The parts of an ISO-8601 duration, each 0 when absent. */
export function durationParts(iso: string): {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
} {
  const m = isoDuration.exec(iso);
  if (!m) throw new Error(`not an ISO-8601 duration: ${iso}`);
  const n = (s: string | undefined) => (s ? Number(s.slice(0, -1)) : 0);
  return {
    years: n(m[1]),
    months: n(m[2]),
    weeks: n(m[3]),
    days: n(m[4]),
    hours: n(m[6]),
    minutes: n(m[7]),
    seconds: n(m[8]),
  };
}

/** Milliseconds of an ISO-8601 duration (months as 30 days, years as 365: only used for SLAs). */
export function durationMs(iso: string): number {
  const d = durationParts(iso);
  const day = 86_400_000;
  return (
    d.years * 365 * day +
    d.months * 30 * day +
    d.weeks * 7 * day +
    d.days * day +
    d.hours * 3_600_000 +
    d.minutes * 60_000 +
    d.seconds * 1000
  );
}

/** A feed's allowance: `every + grace` after one batch, the next is due (the freshness rule). */
export const allowanceMs = (k: { freshness: { every: string; grace: string } }) =>
  durationMs(k.freshness.every) + durationMs(k.freshness.grace);

const id = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,62}$/, 'expected a lower-case id (a-z, 0-9, _ or -), starting with a letter');
const duration = z.string().regex(isoDuration, 'expected an ISO-8601 duration such as P1D or PT6H');
const email = z.email();
const reservedDims = new Set(['kpi', 'at', 'value', 'subject', 'partner', 'snapshot', 'ts', 'dims']);

export const measures = ['avg', 'sum', 'count', 'rate', 'p50', 'p90', 'p95', 'distinct'] as const;
export const grains = ['day', 'week', 'month'] as const;
export const disclosures = ['public', 'partnership', 'need_to_know'] as const;
/** How much a KPI's incidents matter: the service levels give each severity its own reaction times. */
export const severities = ['critical', 'major', 'minor'] as const;
export type Severity = (typeof severities)[number];

/** One object for both kinds, so a mistake is reported at its own path (band.upper), not as "no union member matched". */
const band = z
  .strictObject({
    method: z.enum(['static', 'control']).default('static'),
    lower: z.number().optional(),
    upper: z.number().optional(),
    baseline: z.number().int().min(2).max(520).optional().describe('control: closed periods in the baseline'),
    sigma: z.number().positive().max(10).optional().describe('control: band half-width in standard deviations'),
    rules: z
      .array(z.enum(['2of3beyond2sigma', '4of5beyond1sigma', '8onOneSide']))
      .optional()
      .describe('control: Western Electric run rules'),
  })
  .superRefine((b, ctx) => {
    if (b.method === 'control') {
      if (b.baseline === undefined)
        ctx.addIssue({ code: 'custom', path: ['baseline'], message: 'a control band needs baseline (closed periods)' });
      if (b.sigma === undefined)
        ctx.addIssue({ code: 'custom', path: ['sigma'], message: 'a control band needs sigma' });
      for (const k of ['lower', 'upper'] as const)
        if (b[k] !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: [k],
            message: 'a control band computes its limits; remove lower/upper',
          });
    } else {
      if (b.lower === undefined && b.upper === undefined)
        ctx.addIssue({ code: 'custom', path: [], message: 'a static band needs lower, upper or both' });
      if (b.lower !== undefined && b.upper !== undefined && b.lower > b.upper)
        ctx.addIssue({ code: 'custom', path: ['lower'], message: 'lower must not exceed upper' });
      for (const k of ['baseline', 'sigma', 'rules'] as const)
        if (b[k] !== undefined)
          ctx.addIssue({ code: 'custom', path: [k], message: `${k} belongs to a control band (method: control)` });
    }
  });

const owner = z.strictObject({
  name: z.string().min(1).max(200),
  email,
  webhook: z.url({ protocol: /^https?$/ }).optional(),
});

const kpi = z.strictObject({
  id,
  title: z.string().min(1).max(200),
  description: z.string().max(2000).optional(),
  unit: z.string().min(1).max(40),
  /** The title, unit and dimension names in another language the dashboard speaks (de, en). */
  translations: z
    .partialRecord(
      z.enum(['de', 'en']),
      z.strictObject({
        title: z.string().min(1).max(200).optional(),
        unit: z.string().min(1).max(40).optional(),
        dimensions: z.record(z.string().min(1).max(63), z.string().min(1).max(100)).optional(),
      }),
    )
    .optional(),
  /** What one subject is (order, customer, employee…): every point names one. */
  subject: z.string().min(1).max(60),
  measure: z.enum(measures),
  range: z
    .tuple([z.number(), z.number()])
    .refine(([a, b]) => a <= b, { message: 'range must be [min, max] with min ≤ max' })
    .optional(),
  grains: z.array(z.enum(grains)).min(1),
  dimensions: z.record(id, z.array(z.string().min(1).max(100)).min(1)).default({}),
  disclosure: z.enum(disclosures),
  /** public KPIs are readable without a token only when published. */
  published: z.boolean().default(false),
  needToKnow: z.array(email).default([]),
  breakdown: z.enum(['per_partner', 'combined']),
  minGroupSize: z.number().int().min(1).max(1000).optional(),
  /**
   * Whether cells carry their exact number of distinct subjects. A count is a measure too (it
   * gives a partner's volume, and value × n a withheld sum), so it is shown only when agreed.
   */
  counts: z.enum(['exact', 'none']).default('none'),
  /**
   * The dominance rule of a sum KPI, in percent: a cell in which one partner's share of the sum
   * (by absolute value) exceeds it is withheld, and so is every cell holding that partner's part.
   */
  dominance: z.number().gt(0).lt(100).optional(),
  band,
  evaluate: z.strictObject({ grain: z.enum(grains), consecutive: z.number().int().min(1).max(52).default(1) }),
  freshness: z.strictObject({
    every: duration.refine((d) => !isoDuration.test(d) || durationMs(d) >= 60_000, {
      message: 'a feed is expected at most once a minute (PT1M or longer)',
    }),
    grace: duration,
  }),
  owners: z.record(id, owner),
  escalation: z.strictObject({ ackWithin: duration }),
  /** Its incidents' severity: which of the service levels' reaction times apply to them. */
  severity: z.enum(severities).default('major'),
});

/** A calendar date YYYY-MM-DD between 2000 and 2100 (the range every date of the room lies in). */
export const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'expected a date YYYY-MM-DD')
  .refine(
    (d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)) && new Date(`${d}T00:00:00Z`).toISOString().startsWith(d),
    {
      message: 'not a calendar date',
    },
  )
  .refine((d) => d >= '2000-01-01' && d <= '2100-12-31', { message: 'expected a date between 2000 and 2100' });

export const stages = ['proof_of_concept', 'field_test', 'rollout'] as const;
export const comparators = ['above', 'below', 'atLeast', 'atMost'] as const;

/**
 * A condition on a KPI over closed periods: "error rate above 0.05 in three consecutive months"
 * is `{kpi: error_rate, grain: month, above: 0.05, periods: 3}`. Judged on disclosed values
 * only: a withheld period never counts as meeting it.
 */
const condition = z.strictObject({
  kpi: id,
  /** `combined`, or a partner's id for a KPI broken down per partner. */
  scope: z.string().min(1).max(63).default('combined'),
  grain: z.enum(grains),
  above: z.number().optional(),
  below: z.number().optional(),
  atLeast: z.number().optional(),
  atMost: z.number().optional(),
  periods: z.number().int().min(1).max(36).default(1).describe('consecutive closed periods'),
  description: z.string().min(1).max(500).optional(),
});
export type Condition = z.infer<typeof condition>;

const milestone = z.strictObject({ date: isoDate, target: z.number() });

/** A joint goal on one KPI and scope: where the partners want it by when, and the steps on the way. */
const goal = z.strictObject({
  id,
  title: z.string().min(1).max(200),
  kpi: id,
  scope: z.string().min(1).max(63).default('combined'),
  /** The periods the goal is judged on; the KPI's evaluation grain when absent. */
  grain: z.enum(grains).optional(),
  /** at_most: the goal is met at or below the target (lead time); at_least: at or above it. */
  direction: z.enum(['at_most', 'at_least']),
  target: z.number(),
  start: isoDate,
  due: isoDate,
  milestones: z.array(milestone).max(60).default([]),
  /** The responsible owner of each partner. */
  owners: z.record(id, owner),
  assumptions: z.array(z.string().min(1).max(1000)).max(20).default([]),
  /** Conditions on which the partners stop pursuing the goal (or the partnership). */
  exitCriteria: z.array(condition).max(20).default([]),
});
export type Goal = z.infer<typeof goal>;

/** Time to acknowledge and to resolve an incident of one severity, from its opening. */
const responseLevel = z.strictObject({ acknowledge: duration, resolve: duration });

/**
 * A partner's announced maintenance: inside it the room raises no freshness breach for the
 * partner's feeds and escalates none of its incidents; feed periods it covers are excused.
 */
const maintenanceWindow = z.strictObject({
  /** The partners whose systems are down; every partner when absent. */
  partners: z.array(id).min(1).optional(),
  from: z.iso.datetime({ offset: true }),
  to: z.iso.datetime({ offset: true }),
  reason: z.string().min(1).max(500),
});
export type MaintenanceWindow = z.infer<typeof maintenanceWindow>;

/** The partnership's own service levels (feed freshness is each KPI's `freshness`). */
const serviceLevels = z.strictObject({
  incidents: z
    .strictObject({
      critical: responseLevel.optional(),
      major: responseLevel.optional(),
      minor: responseLevel.optional(),
    })
    .default({}),
  /** The share of feed periods each partner delivers on time (0–1), e.g. 0.95. */
  feedsOnTime: z.number().gt(0).max(1).optional(),
  maintenanceWindows: z.array(maintenanceWindow).max(200).default([]),
});
export type ServiceLevels = z.infer<typeof serviceLevels>;

/**
 * The steering committee's chair rotates among its members: a term of `every` (weeks, months or
 * years) from `from`, in `order` (steering's own order when absent). Without it the first member chairs.
 */
const chair = z.strictObject({
  every: z.string().regex(/^P[1-9]\d?[WMY]$/, 'expected a term of weeks, months or years, such as P2W, P6M or P1Y'),
  from: isoDate.describe('the day the first term begins'),
  order: z.array(email).min(1).max(50).optional(),
});
export type Chair = z.infer<typeof chair>;

/** A maintenance window may last a week at most: longer, and it would silence a feed for good. */
export const MAX_MAINTENANCE_MS = 7 * 86_400_000;

/** The partners' agreement: the only source of what the room computes and discloses. */
export const agreementSchema = z
  .strictObject({
    partnership: z.strictObject({
      id,
      title: z.string().min(1).max(200),
      timezone: z.string().refine(validTimezone, { message: 'expected an IANA time zone such as Europe/Berlin' }),
    }),
    partners: z
      .array(
        z.strictObject({
          id,
          name: z.string().min(1).max(200),
          minGroupSize: z.number().int().min(1).max(1000).optional(),
          /** Who receives the monthly review for this partner (besides the steering committee). */
          contacts: z
            .array(z.strictObject({ name: z.string().min(1).max(200), email }))
            .max(20)
            .default([]),
        }),
      )
      .min(2),
    defaults: z
      .strictObject({ minGroupSize: z.number().int().min(1).max(1000).default(5) })
      .default({ minGroupSize: 5 }),
    steering: z.array(z.strictObject({ name: z.string().min(1), email })).min(1),
    chair: chair.optional(),
    /** Required for a `combined` KPI with two partners: each can recover the other's figure. */
    twoPartyConsent: z.boolean().default(false),
    retention: duration.optional(),
    /** What the partnership is for, in a few sentences: shown on the dashboard and in every review. */
    intent: z.string().min(1).max(2000).optional(),
    /** Where the partnership stands, and the conditions to enter the next stage. */
    stage: z
      .strictObject({
        current: z.enum(stages),
        next: z.array(condition).max(20).default([]).describe('criteria to enter the next stage'),
      })
      .optional(),
    kpis: z.array(kpi).min(1),
    goals: z.array(goal).max(50).default([]),
    serviceLevels: serviceLevels.optional(),
  })
  .superRefine((a, ctx) => {
    if (a.chair) {
      const members = new Set(a.steering.map((m) => m.email.toLowerCase()));
      const seen = new Set<string>();
      (a.chair.order ?? []).forEach((e, i) => {
        const k = e.toLowerCase();
        if (!members.has(k))
          ctx.addIssue({ code: 'custom', path: ['chair', 'order', i], message: `${e} is not a steering member` });
        else if (seen.has(k))
          ctx.addIssue({ code: 'custom', path: ['chair', 'order', i], message: `${e} is named twice` });
        seen.add(k);
      });
      if (!a.chair.every.endsWith('W') && a.chair.from.slice(8) > '28')
        ctx.addIssue({
          code: 'custom',
          path: ['chair', 'from'],
          message: 'a term of months or years begins on day 1–28 (every month has that day)',
        });
    }
    const partnerIds = new Set<string>();
    a.partners.forEach((p, i) => {
      if (partnerIds.has(p.id))
        ctx.addIssue({ code: 'custom', path: ['partners', i, 'id'], message: `duplicate partner id ${p.id}` });
      partnerIds.add(p.id);
    });
    const kpiIds = new Set<string>();
    a.kpis.forEach((k, i) => {
      const at = (...p: (string | number)[]) => ['kpis', i, ...p];
      if (kpiIds.has(k.id)) ctx.addIssue({ code: 'custom', path: at('id'), message: `duplicate KPI id ${k.id}` });
      kpiIds.add(k.id);
      if (!k.grains.includes(k.evaluate.grain))
        ctx.addIssue({
          code: 'custom',
          path: at('evaluate', 'grain'),
          message: `grain ${k.evaluate.grain} is not among the KPI's grains`,
        });
      if (k.measure === 'rate' && k.range && (k.range[0] < 0 || k.range[1] > 1))
        ctx.addIssue({ code: 'custom', path: at('range'), message: 'a rate KPI takes values 0 and 1 only' });
      for (const key of Object.keys(k.dimensions)) {
        if (reservedDims.has(key))
          ctx.addIssue({ code: 'custom', path: at('dimensions', key), message: `${key} is a reserved column name` });
      }
      for (const owner of Object.keys(k.owners)) {
        if (!partnerIds.has(owner))
          ctx.addIssue({
            code: 'custom',
            path: at('owners', owner),
            message: `${owner} is not a partner of this agreement`,
          });
      }
      if (k.dominance !== undefined && k.measure !== 'sum')
        ctx.addIssue({
          code: 'custom',
          path: at('dominance'),
          message: `${k.id}: the dominance rule is a partner's share of a sum; ${k.id} is measured as ${k.measure}`,
        });
      else if (k.dominance !== undefined && k.dominance < 100 / a.partners.length)
        ctx.addIssue({
          code: 'custom',
          path: at('dominance'),
          message: `${k.id}: with ${a.partners.length} partners one of them always holds at least ${Math.ceil(100 / a.partners.length)} % of a sum, so no cell could be shown; set at least that`,
        });
      if (k.breakdown === 'combined' && a.partners.length < 3 && !a.twoPartyConsent) {
        ctx.addIssue({
          code: 'custom',
          path: at('breakdown'),
          message: `${k.id}: a combined KPI with fewer than three partners lets each partner recover the other's figure; set twoPartyConsent: true to accept that`,
        });
      }
    });
    const kpiById = new Map(a.kpis.map((k) => [k.id, k]));
    /** The KPI a condition or goal names, its scope and grain; each problem at its own path. */
    const checkTarget = (
      at: (string | number)[],
      t: { kpi: string; scope: string; grain?: Grain | undefined },
    ): Kpi | undefined => {
      const k = kpiById.get(t.kpi);
      if (!k) {
        ctx.addIssue({ code: 'custom', path: [...at, 'kpi'], message: `${t.kpi} is not a KPI of this agreement` });
        return undefined;
      }
      if (t.scope !== 'combined') {
        if (!partnerIds.has(t.scope))
          ctx.addIssue({
            code: 'custom',
            path: [...at, 'scope'],
            message: `expected combined or a partner id; ${t.scope} is neither`,
          });
        else if (k.breakdown !== 'per_partner')
          ctx.addIssue({
            code: 'custom',
            path: [...at, 'scope'],
            message: `${k.id} is agreed combined only: no partner's own figure to judge`,
          });
      }
      if (t.grain && !k.grains.includes(t.grain))
        ctx.addIssue({
          code: 'custom',
          path: [...at, 'grain'],
          message: `${k.id} is not agreed at grain ${t.grain} (its grains: ${k.grains.join(', ')})`,
        });
      return k;
    };
    const checkCondition = (at: (string | number)[], c: Condition) => {
      checkTarget(at, c);
      const set = comparators.filter((op) => c[op] !== undefined);
      if (set.length !== 1)
        ctx.addIssue({
          code: 'custom',
          path: at,
          message: `a condition needs exactly one of ${comparators.join(', ')}${set.length ? ` (has ${set.join(', ')})` : ''}`,
        });
    };
    if (a.stage) {
      a.stage.next.forEach((c, i) => checkCondition(['stage', 'next', i], c));
      if (a.stage.current === 'rollout' && a.stage.next.length)
        ctx.addIssue({
          code: 'custom',
          path: ['stage', 'next'],
          message: 'rollout is the last stage: no next stage to enter',
        });
    }
    const goalIds = new Set<string>();
    a.goals.forEach((g, i) => {
      const at = (...p: (string | number)[]) => ['goals', i, ...p];
      if (goalIds.has(g.id)) ctx.addIssue({ code: 'custom', path: at('id'), message: `duplicate goal id ${g.id}` });
      goalIds.add(g.id);
      const k = checkTarget(at(), g);
      if (g.due <= g.start) ctx.addIssue({ code: 'custom', path: at('due'), message: 'due must come after start' });
      let prev = g.start;
      g.milestones.forEach((m, j) => {
        if (m.date <= prev || m.date >= g.due)
          ctx.addIssue({
            code: 'custom',
            path: at('milestones', j, 'date'),
            message: `milestones run in date order after start (${g.start}) and before due (${g.due}, the goal's own target)`,
          });
        prev = m.date > prev ? m.date : prev;
      });
      if (Object.keys(g.owners).length === 0)
        ctx.addIssue({
          code: 'custom',
          path: at('owners'),
          message: 'a goal needs a responsible owner of at least one partner',
        });
      for (const [p, o] of Object.entries(g.owners)) {
        if (!partnerIds.has(p))
          ctx.addIssue({ code: 'custom', path: at('owners', p), message: `${p} is not a partner of this agreement` });
        // A goal's owners hear of its progress and exit criteria: on a need-to-know KPI only its readers may own it.
        else
          for (const nk of [k, ...g.exitCriteria.map((c) => kpiById.get(c.kpi))])
            if (nk?.disclosure === 'need_to_know' && !mayReadNeedToKnow(a, nk, o.email)) {
              ctx.addIssue({
                code: 'custom',
                path: at('owners', p, 'email'),
                message: `${nk.id} is need-to-know: ${o.email} may not read it (needToKnow, the KPI's owners or the steering committee)`,
              });
              break;
            }
      }
      g.exitCriteria.forEach((c, j) => checkCondition(at('exitCriteria', j), c));
    });
    const sl = a.serviceLevels;
    if (sl) {
      for (const s of severities) {
        const l = sl.incidents[s];
        if (
          l &&
          isoDuration.test(l.resolve) &&
          isoDuration.test(l.acknowledge) &&
          durationMs(l.resolve) < durationMs(l.acknowledge)
        )
          ctx.addIssue({
            code: 'custom',
            path: ['serviceLevels', 'incidents', s, 'resolve'],
            message: `an incident cannot be resolved in time without being acknowledged first: resolve (${l.resolve}) must be at least acknowledge (${l.acknowledge})`,
          });
      }
      // Back to back (or overlapping), a partner's windows may not last more than 7 days either.
      const flagged = new Set<number>();
      for (const partner of a.partners.map((p) => p.id)) {
        const mine = sl.maintenanceWindows
          .map((w, i) => ({ i, from: Date.parse(w.from), to: Date.parse(w.to), partners: w.partners }))
          .filter((w) => w.to > w.from && (!w.partners || w.partners.includes(partner)))
          .sort((x, y) => x.from - y.from);
        let start = -Infinity;
        let end = -Infinity;
        for (const w of mine) {
          if (w.from > end) start = w.from;
          end = Math.max(end, w.to);
          if (end - start > MAX_MAINTENANCE_MS && w.to - w.from <= MAX_MAINTENANCE_MS && !flagged.has(w.i)) {
            flagged.add(w.i);
            ctx.addIssue({
              code: 'custom',
              path: ['serviceLevels', 'maintenanceWindows', w.i, 'to'],
              message: `with the windows before it, ${partner}'s maintenance lasts more than 7 days without a break`,
            });
          }
        }
      }
      sl.maintenanceWindows.forEach((w, i) => {
        const at = (...p: (string | number)[]) => ['serviceLevels', 'maintenanceWindows', i, ...p];
        (w.partners ?? []).forEach((p, j) => {
          if (!partnerIds.has(p))
            ctx.addIssue({
              code: 'custom',
              path: at('partners', j),
              message: `${p} is not a partner of this agreement`,
            });
        });
        const span = Date.parse(w.to) - Date.parse(w.from);
        if (!(span > 0)) ctx.addIssue({ code: 'custom', path: at('to'), message: 'a window ends after it starts' });
        else if (span > MAX_MAINTENANCE_MS)
          ctx.addIssue({
            code: 'custom',
            path: at('to'),
            message: 'a maintenance window lasts at most 7 days: a longer one would silence the feed for good',
          });
      });
    }
  });

export type Agreement = z.infer<typeof agreementSchema>;
export type AgreementInput = z.input<typeof agreementSchema>;
export type Kpi = Agreement['kpis'][number];

/** Whether `email` reads a need-to-know KPI: its needToKnow list, its owners, the steering committee. */
export function mayReadNeedToKnow(a: Pick<Agreement, 'steering'>, k: Kpi, email: string): boolean {
  const e = email.toLowerCase();
  return [...k.needToKnow, ...Object.values(k.owners).map((x) => x.email), ...a.steering.map((s) => s.email)].some(
    (x) => x.toLowerCase() === e,
  );
}

function validTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** `kpis[2].band.upper` from a zod path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

export interface AgreementProblem {
  path: string;
  message: string;
}

export type AgreementResult = { ok: true; agreement: Agreement } | { ok: false; problems: AgreementProblem[] };

/** Validates a parsed document; every problem with its path. */
export function validateAgreement(doc: unknown): AgreementResult {
  const r = agreementSchema.safeParse(doc);
  if (r.success) return { ok: true, agreement: r.data };
  return {
    ok: false,
    problems: r.error.issues.map((i) => ({
      path: formatPath(i.path),
      message: i.message.replace(/^Invalid input: /, ''),
    })),
  };
}

/** Flow collections (`[…]`, `{…}`) an agreement may nest: its deepest needs three. */
const MAX_FLOW_DEPTH = 64;
/** Columns of indentation plus block indicators (`- `, `? `) on one line: the demo needs 10. */
const MAX_BLOCK_DEPTH = 32;

/**
 * Where the text first nests deeper than the YAML parser should be given, or undefined: flow
 * collections deeper than `maxFlow`, or a line whose indentation and leading block indicators
 * (`- - - x`) pass `maxBlock`. A linear scan run before the parser, which recurses once per
 * level: a mebibyte of `[` took it 9 s on the room's one event loop, of `{` more than the heap,
 * and 40 kB of `- ` and then 200 kB of it aborted Node. A quote hides brackets only where a
 * quoted scalar may begin (a line's start, after `[`, `{`, a flow `,`, or `: `, `? `, `- ` in
 * block context) and only up to its closing quote on the same line; any other quote is text, so
 * no quote can hide nesting the parser would see; after a tag or an anchor (`!!str "…"`) one may
 * begin too. A bracket inside a plain scalar counts too: an agreement would need 64 unclosed ones
 * in its text to be refused for them. Block indicators and indentation count inside flow
 * collections as well: a bracket in a plain scalar must not switch their count off.
 */
export function nestingTooDeep(
  text: string,
  maxFlow = MAX_FLOW_DEPTH,
  maxBlock = MAX_BLOCK_DEPTH,
): { line: number; col: number; what: 'flow' | 'block' } | undefined {
  let depth = 0;
  let line = 1;
  let lineStart = 0;
  // The last character that was not a space, and whether a space came after it.
  let prev = '\n';
  let spaced = false;
  // At a line's start: the block depth so far (indentation, then `- ` / `? ` indicators).
  let leading = true;
  let block = 0;
  // The first character of the last token (after a space, a line's start, `[`, `{` or `,`): a tag (`!!str`) or an
  // anchor (`&a`) there is a node's property, after which a quoted scalar may begin.
  let token = '\n';
  const at = (i: number, what: 'flow' | 'block') => ({ line, col: i - lineStart + 1, what });
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      lineStart = i + 1;
      prev = '\n';
      spaced = false;
      leading = true;
      block = 0;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      spaced = true;
      if (leading && ++block > maxBlock) return at(i, 'block');
      continue;
    }
    if (leading && (c === '-' || c === '?') && /[ \t\r\n]/.test(text[i + 1] ?? '\n')) {
      if (++block > maxBlock) return at(i, 'block');
      prev = c;
      spaced = false;
      continue;
    }
    leading = false;
    if (c === '#' && (i === lineStart || /\s/.test(text[i - 1]!))) {
      const end = text.indexOf('\n', i);
      i = (end < 0 ? text.length : end) - 1;
      continue;
    }
    if (c === '"' || c === "'") {
      const opens =
        prev === '\n' ||
        prev === '[' ||
        prev === '{' ||
        (prev === ',' && depth > 0) ||
        (spaced && (prev === ':' || prev === '?' || (prev === '-' && depth === 0) || token === '!' || token === '&'));
      const close = opens ? closingQuote(text, i) : -1;
      if (close > 0) {
        i = close;
        prev = c;
        spaced = false;
        continue;
      }
    }
    if (spaced || prev === '\n' || prev === '[' || prev === '{' || prev === ',') token = c;
    if (c === '[' || c === '{') {
      if (++depth > maxFlow) return at(i, 'flow');
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
    prev = c;
    spaced = false;
  }
  return undefined;
}

/** The index of the quote closing the one at `open`, on the same line, or -1. */
function closingQuote(text: string, open: number): number {
  const q = text[open]!;
  for (let i = open + 1; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') return -1;
    if (q === '"' && c === '\\') i++;
    else if (c === q) {
      if (q === "'" && text[i + 1] === "'") i++;
      else return i;
    }
  }
  return -1;
}

/**
 * The first key given twice in one mapping, with where it is. The parser's own check compares
 * every key with every other (60,000 keys took it 33 s), so the room parses without it and walks
 * the document once, with a set per mapping.
 */
function repeatedKey(node: unknown): { key: string; offset: number } | undefined {
  const stack: unknown[] = [node];
  while (stack.length) {
    const n = stack.pop();
    if (YAML.isMap(n)) {
      const seen = new Set<string>();
      for (const pair of n.items) {
        const key = YAML.isScalar(pair.key) ? String(pair.key.value) : JSON.stringify(pair.key);
        if (seen.has(key)) return { key, offset: YAML.isNode(pair.key) ? (pair.key.range?.[0] ?? 0) : 0 };
        seen.add(key);
        stack.push(pair.value);
      }
    } else if (YAML.isSeq(n)) stack.push(...n.items);
  }
  return undefined;
}

/** Parses YAML or JSON text (JSON is YAML) and validates it. */
export function parseAgreementText(text: string): AgreementResult {
  const deep = nestingTooDeep(text);
  if (deep)
    return {
      ok: false,
      problems: [
        {
          path: `line ${deep.line}, column ${deep.col}`,
          message:
            deep.what === 'flow'
              ? `collections nested deeper than ${MAX_FLOW_DEPTH} levels; an agreement needs a few`
              : `indented or nested deeper than ${MAX_BLOCK_DEPTH} levels; an agreement needs a few`,
        },
      ],
    };
  const lines = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: false, lineCounter: lines });
  const error = doc.errors[0];
  if (error) {
    const pos = error.linePos?.[0];
    return {
      ok: false,
      problems: [
        { path: pos ? `line ${pos.line}, column ${pos.col}` : '(file)', message: error.message.split('\n')[0]! },
      ],
    };
  }
  const repeated = repeatedKey(doc.contents);
  if (repeated) {
    const pos = lines.linePos(repeated.offset);
    return {
      ok: false,
      problems: [
        {
          path: `line ${pos.line}, column ${pos.col}`,
          message: `Map keys must be unique: ${JSON.stringify(repeated.key.slice(0, 60))} is given twice`,
        },
      ],
    };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, problems: [{ path: '(file)', message: (err as Error).message.split('\n')[0]! }] };
  }
  return validateAgreement(value);
}

export function loadAgreementFile(file: string): AgreementResult {
  return asNewAgreement(parseAgreementText(readFileSync(file, 'utf8')));
}

/** The longest duration a new agreement may name: past it, times computed from it leave the calendar. */
const MAX_DURATION_MS = 100 * 365 * 86_400_000;
/** The fields that hold durations (freshness, escalation, service levels, retention). */
const DURATION_KEYS = new Set(['every', 'grace', 'ackWithin', 'acknowledge', 'resolve', 'retention']);

/**
 * A document offered as a new agreement (a proposal, the file installed at first start), held to
 * what the stored versions need not be: no duration past 100 years (a freshness allowance of
 * P999999999999Y activated, and every overview then failed on a date past the calendar), and no
 * text with NUL, half a surrogate pair or another control character but tab and line breaks — what
 * the JSON routes refuse (input-hygiene.ts), which YAML's escapes ("\0", "\uD800", "\e") write
 * past their check on the request's text: PostgreSQL refused the NUL and the half pair with a 500,
 * and the rest reached pages. Kept out of the schema, which also reads every stored version: one
 * accepted before stays readable.
 */
export function asNewAgreement(r: AgreementResult): AgreementResult {
  if (!r.ok) return r;
  const problems: AgreementProblem[] = [];
  const walk = (node: unknown, path: (string | number)[]) => {
    if (typeof node === 'string') {
      if (UNSTORABLE.test(node))
        problems.push({
          path: formatPath(path),
          message: 'holds NUL, half a surrogate pair or a control character (tab and line breaks are text)',
        });
    } else if (Array.isArray(node)) node.forEach((x, i) => walk(x, [...path, i]));
    else if (node !== null && typeof node === 'object')
      for (const [key, value] of Object.entries(node)) {
        if (UNSTORABLE.test(key))
          problems.push({
            path: formatPath(path),
            message: 'a key holds NUL, half a surrogate pair or a control character',
          });
        if (DURATION_KEYS.has(key) && typeof value === 'string' && isoDuration.test(value)) {
          if (durationMs(value) > MAX_DURATION_MS)
            problems.push({ path: formatPath([...path, key]), message: 'expected a duration of at most 100 years' });
        } else walk(value, [...path, key]);
      }
  };
  walk(r.agreement, []);
  return problems.length === 0 ? r : { ok: false, problems };
}

/** The JSON Schema for editors, generated from the zod schema. */
export function agreementJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(agreementSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}

export function agreementDigest(a: Agreement): string {
  return canonicalDigest(a);
}

/**
 * The agreement as a reader who may read only the KPIs `canRead` admits sees it: the other KPIs
 * are left out, and with them every goal on one and every stage or exit criterion naming one (not
 * even their ids reach such a reader).
 */
export function shareableAgreement(a: Agreement, canRead: (k: Kpi) => boolean): Agreement {
  const readable = new Set(a.kpis.filter(canRead).map((k) => k.id));
  const keep = (c: Condition) => readable.has(c.kpi);
  return {
    ...a,
    kpis: a.kpis.filter((k) => readable.has(k.id)),
    ...(a.stage ? { stage: { ...a.stage, next: a.stage.next.filter(keep) } } : {}),
    goals: a.goals.filter((g) => readable.has(g.kpi)).map((g) => ({ ...g, exitCriteria: g.exitCriteria.filter(keep) })),
  };
}

/** Names (lower-cased e-mails) that read beyond their token's role: steering members, need-to-know readers, KPI owners. */
export function privilegedNames(a: Agreement): Set<string> {
  return new Set(
    [
      ...a.steering.map((s) => s.email),
      ...a.kpis.flatMap((k) => [...k.needToKnow, ...Object.values(k.owners).map((o) => o.email)]),
    ].map((e) => e.toLowerCase()),
  );
}

/** The strictest threshold that applies to a KPI: its own, the default, and every partner's. */
export function effectiveMinGroupSize(a: Agreement, k: Kpi): number {
  return Math.max(
    k.minGroupSize ?? a.defaults.minGroupSize,
    a.defaults.minGroupSize,
    ...a.partners.map((p) => p.minGroupSize ?? 0),
  );
}

/** One activated (or proposed) version of the agreement, as the room keeps it. */
export interface AgreementVersion {
  version: number;
  agreement: Agreement;
  digest: string;
  activatedAt: Date | null;
}
