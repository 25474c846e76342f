import type { Agreement, Kpi } from '../governance/agreement-schema.js';
import type { FieldError } from '../platform/errors.js';

/** A parsed point before checking: whatever the body said, field by field. */
export interface Candidate {
  kpi?: unknown;
  at?: unknown;
  value?: unknown;
  subject?: unknown;
  dims?: unknown;
}

/** A point that passed every check; `subject` is still raw here and pseudonymised next. */
export interface ValidPoint {
  kpi: string;
  atMs: number;
  value: number;
  subject: string;
  /** Canonical JSON of the dimensions (keys sorted) or null. */
  dims: string | null;
}

export const MAX_SUBJECT_LENGTH = 256;
const MAX_ERRORS_KEPT = 100;
const knownFields = new Set(['kpi', 'at', 'value', 'subject', 'dims']);
// ISO-8601 date-time with a mandatory offset (Z or ±hh:mm).
const isoWithOffset = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-](\d{2}):?(\d{2}))$/;
const controlChars = /[\u0000-\u001f\u007f]/;

/** Collects row errors: the first 100 kept, all counted by row. */
export class RowErrors {
  readonly kept: FieldError[] = [];
  rejectedRows = 0;
  #dropped = false;
  add(row: number, field: string, message: string): void {
    if (this.kept.length < MAX_ERRORS_KEPT) this.kept.push({ row, field, message });
    else this.#dropped = true;
  }
  /** True only when an error was left out, not when exactly 100 were kept. */
  get truncated(): boolean {
    return this.#dropped;
  }
}

/** A short, safe rendering of a value a client sent, for error messages (never subjects). */
function show(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v) : typeof v === 'object' ? (Array.isArray(v) ? 'an array' : v === null ? 'null' : 'an object') : String(v);
  return s;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

interface KpiCheck {
  kpi: Kpi;
  min: number;
  max: number;
  binary: boolean;
  dims: Map<string, Set<string>>;
}

export type PointValidator = (c: Candidate, row: number, errors: RowErrors, extraFields?: readonly string[]) => ValidPoint | null;

/** Compiles the agreement's rules once; the returned function checks one point. */
export function compileValidator(agreement: Agreement, opts: { now: () => number; clockSkewMs: number }): PointValidator {
  const kpis = new Map<string, KpiCheck>();
  for (const k of agreement.kpis) {
    kpis.set(k.id, {
      kpi: k,
      min: k.range?.[0] ?? -Infinity,
      max: k.range?.[1] ?? Infinity,
      binary: k.measure === 'rate',
      dims: new Map(Object.entries(k.dimensions).map(([key, values]) => [key, new Set(values)])),
    });
  }
  const knownKpis = [...kpis.keys()].join(', ');
  const earliest = Date.UTC(2000, 0, 1);

  return (c, row, errors, extraFields) => {
    let bad = 0;
    const fail = (field: string, message: string) => {
      bad++;
      errors.add(row, field, message);
    };

    if (extraFields) {
      for (const f of extraFields) {
        if (knownFields.has(f)) continue;
        if (f === 'partner') fail('partner', 'not accepted: the partner is the one the token belongs to');
        else fail(f, 'unknown field');
      }
    }

    let check: KpiCheck | undefined;
    if (typeof c.kpi !== 'string') fail('kpi', c.kpi === undefined ? 'required' : `expected a string, got ${typeName(c.kpi)}`);
    else if (!(check = kpis.get(c.kpi))) fail('kpi', `unknown KPI ${show(c.kpi)}; the agreement has ${knownKpis}`);

    let atMs = NaN;
    if (typeof c.at !== 'string') fail('at', c.at === undefined ? 'required' : `expected an ISO-8601 string, got ${typeName(c.at)}`);
    else {
      const m = isoWithOffset.exec(c.at);
      if (!m) fail('at', `expected an ISO-8601 date-time with an offset (2026-11-01T10:00:00Z), got ${show(c.at)}`);
      else {
        atMs = Date.parse(c.at);
        // Date.parse rolls 2026-02-30 over to March; a real calendar date round-trips.
        const day = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!));
        if (Number.isNaN(atMs) || day.getUTCDate() !== +m[3]! || +m[4]! > 23 || +m[5]! > 59 || +(m[6] ?? 0) > 59) fail('at', `not a valid date-time: ${show(c.at)}`);
        else if (atMs > opts.now() + opts.clockSkewMs) fail('at', 'lies in the future');
        else if (atMs < earliest) fail('at', 'lies before 2000-01-01');
      }
    }

    if (typeof c.value !== 'number') fail('value', c.value === undefined ? 'required' : `expected a number, got ${typeName(c.value)}`);
    else if (!Number.isFinite(c.value)) fail('value', 'expected a finite number');
    else if (check) {
      if (check.binary && c.value !== 0 && c.value !== 1) fail('value', `${check.kpi.id} is a rate: the value must be 0 or 1`);
      else if (c.value < check.min || c.value > check.max) fail('value', `${c.value} is outside ${check.kpi.id}'s range [${check.min}, ${check.max}]`);
    }

    // Raw subjects are never echoed: an error names the problem, not the value.
    if (typeof c.subject !== 'string') fail('subject', c.subject === undefined || c.subject === null ? `required: every ${check?.kpi.subject ?? 'point'} is counted by its subject` : `expected a string, got ${typeName(c.subject)}`);
    else if (c.subject.length === 0) fail('subject', 'must not be empty');
    else if (c.subject.length > MAX_SUBJECT_LENGTH) fail('subject', `longer than ${MAX_SUBJECT_LENGTH} characters`);
    else if (controlChars.test(c.subject)) fail('subject', 'contains control characters');

    let dims: string | null = null;
    if (c.dims !== undefined && c.dims !== null) {
      if (typeof c.dims !== 'object' || Array.isArray(c.dims)) fail('dims', `expected an object, got ${typeName(c.dims)}`);
      else if (check) {
        const keys = Object.keys(c.dims as object).sort();
        const out: Record<string, string> = {};
        for (const key of keys) {
          const v = (c.dims as Record<string, unknown>)[key];
          const allowed = check.dims.get(key);
          if (!allowed) fail(`dims.${key.slice(0, 40)}`, `${check.kpi.id} has no dimension ${show(key)}${check.dims.size ? `; agreed: ${[...check.dims.keys()].join(', ')}` : ''}`);
          else if (typeof v !== 'string') fail(`dims.${key}`, `expected a string, got ${typeName(v)}`);
          else if (!allowed.has(v)) fail(`dims.${key}`, `${show(v)} is not an agreed value; agreed: ${[...allowed].join(', ')}`);
          else out[key] = v;
        }
        if (keys.length) dims = JSON.stringify(out);
      }
    }

    if (bad > 0) {
      errors.rejectedRows++;
      return null;
    }
    return { kpi: c.kpi as string, atMs, value: c.value as number, subject: c.subject as string, dims };
  };
}
