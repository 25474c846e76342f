import type { Agreement, Kpi } from '../platform/agreement-schema.js';
import type { FieldError } from '../platform/errors.js';
import { UNPAIRED_SURROGATE } from '../platform/text-rules.js';

/** A parsed point before checking: whatever the body said, field by field. */
/** Names the room itself uses, which an error may name when a body puts them in the wrong place. */
const ROOM_WORDS = new Set(['points', 'batch', 'snapshot', 'kpis']);

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
/** parseIsoWithOffset: not of the form YYYY-MM-DDTHH:MM[:SS[.fff]](Z|±hh:mm). */
export const BAD_FORMAT = -1;
/** parseIsoWithOffset: the right form, but no such instant (2026-02-30, 24:00, +25:00). */
export const BAD_DATE = -2;
const daysIn = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Epoch milliseconds of an ISO-8601 date-time with a mandatory offset, or BAD_FORMAT /
 * BAD_DATE. Hand-written because it runs once per point and regex + Date.parse cost more
 * than the rest of the checks together.
 */
export function parseIsoWithOffset(s: string): number {
  const n = s.length;
  if (n < 17 || n > 40) return BAD_FORMAT;
  const dig = (i: number) => {
    const c = s.charCodeAt(i) - 48;
    return c >= 0 && c <= 9 ? c : -100;
  };
  const two = (i: number) => dig(i) * 10 + dig(i + 1);
  const year = dig(0) * 1000 + dig(1) * 100 + two(2);
  const month = two(5);
  const day = two(8);
  const hour = two(11);
  const minute = two(14);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0) return BAD_FORMAT;
  if (s[4] !== '-' || s[7] !== '-' || s[10] !== 'T' || s[13] !== ':') return BAD_FORMAT;
  let i = 16;
  let second = 0;
  let ms = 0;
  if (s[i] === ':') {
    second = two(i + 1);
    if (second < 0) return BAD_FORMAT;
    i += 3;
    if (s[i] === '.') {
      let digits = 0;
      i++;
      while (i < n && dig(i) >= 0) {
        if (digits < 3) ms = ms * 10 + dig(i);
        digits++;
        i++;
      }
      if (digits === 0 || digits > 9) return BAD_FORMAT;
      for (let d = digits; d < 3; d++) ms *= 10;
    }
  }
  let offsetMin: number;
  const sign = s[i];
  if (sign === 'Z' && i === n - 1) offsetMin = 0;
  else if ((sign === '+' || sign === '-') && (n - i === 6 || n - i === 5)) {
    const oh = two(i + 1);
    const colon = n - i === 6;
    if (colon && s[i + 3] !== ':') return BAD_FORMAT;
    const om = two(i + (colon ? 4 : 3));
    if (oh < 0 || om < 0) return BAD_FORMAT;
    if (oh > 18 || om > 59) return BAD_DATE;
    offsetMin = (sign === '+' ? 1 : -1) * (oh * 60 + om);
  } else return BAD_FORMAT;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > (month === 2 && leap ? 29 : daysIn[month - 1]!) ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  )
    return BAD_DATE;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000;
}
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

/** Checks one point; the returned object is reused by the next call, so read it at once. */
export type PointValidator = (
  c: Candidate,
  row: number,
  errors: RowErrors,
  extraFields?: readonly string[],
) => ValidPoint | null;

/** Compiles the agreement's rules once; the returned function checks one point. */
export function compileValidator(
  agreement: Agreement,
  opts: { now: () => number; clockSkewMs: number },
): PointValidator {
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
  // Dimension keys of any KPI: agreement identifiers, which an error may name.
  const agreedKeys = new Set([...kpis.values()].flatMap((k) => [...k.dims.keys()]));
  const earliest = Date.UTC(2000, 0, 1);

  // One canonical JSON string per agreed (key, value): most points carry one dimension.
  const singleDims = new Map<string, string>();
  let bad = 0;
  let currentRow = 0;
  let sink: RowErrors;
  // One result object, overwritten by every call: a point is consumed before the next is checked.
  const out: ValidPoint = { kpi: '', atMs: 0, value: 0, subject: '', dims: null };
  const fail = (field: string, message: string) => {
    bad++;
    sink.add(currentRow, field, message);
  };

  return (c, row, errors, extraFields) => {
    bad = 0;
    currentRow = row;
    sink = errors;

    if (extraFields) {
      for (const f of extraFields) {
        if (knownFields.has(f)) continue;
        if (f === 'partner') fail('partner', 'not accepted: the partner is the one the token belongs to');
        // A name the room does not use came with the body: not echoed (a misplaced subject would be).
        else if (ROOM_WORDS.has(f)) fail(f, 'not a field of a point');
        else fail('(field)', 'unknown field (expected kpi, at, value, subject and dims)');
      }
    }

    let check: KpiCheck | undefined;
    if (typeof c.kpi !== 'string')
      fail('kpi', c.kpi === undefined ? 'required' : `expected a string, got ${typeName(c.kpi)}`);
    else if (!(check = kpis.get(c.kpi))) fail('kpi', `not a KPI of the agreement; it has ${knownKpis}`);

    let atMs = NaN;
    if (typeof c.at !== 'string')
      fail('at', c.at === undefined ? 'required' : `expected an ISO-8601 string, got ${typeName(c.at)}`);
    else {
      atMs = parseIsoWithOffset(c.at);
      if (atMs === BAD_FORMAT) fail('at', 'expected an ISO-8601 date-time with an offset (2026-11-01T10:00:00Z)');
      else if (atMs === BAD_DATE) fail('at', 'not a valid date-time (no such day or time)');
      else if (atMs > opts.now() + opts.clockSkewMs) fail('at', 'lies in the future');
      else if (atMs < earliest) fail('at', 'lies before 2000-01-01');
    }

    if (typeof c.value !== 'number')
      fail('value', c.value === undefined ? 'required' : `expected a number, got ${typeName(c.value)}`);
    else if (!Number.isFinite(c.value)) fail('value', 'expected a finite number');
    else if (check) {
      if (check.binary && c.value !== 0 && c.value !== 1)
        fail('value', `${check.kpi.id} is a rate: the value must be 0 or 1`);
      else if (c.value < check.min || c.value > check.max)
        fail('value', `outside ${check.kpi.id}'s range [${check.min}, ${check.max}]`);
    }

    // Raw subjects are never echoed: an error names the problem, not the value.
    if (typeof c.subject !== 'string')
      fail(
        'subject',
        c.subject === undefined || c.subject === null
          ? `required: every ${check?.kpi.subject ?? 'point'} is counted by its subject`
          : `expected a string, got ${typeName(c.subject)}`,
      );
    else if (c.subject.trim().length === 0) fail('subject', 'must not be empty or blank');
    else if (c.subject.length > MAX_SUBJECT_LENGTH) fail('subject', `longer than ${MAX_SUBJECT_LENGTH} characters`);
    else if (controlChars.test(c.subject)) fail('subject', 'contains control characters');
    // Two subjects differing only there would be stored, and pseudonymised, as one (U+FFFD).
    else if (UNPAIRED_SURROGATE.test(c.subject)) fail('subject', 'holds half a surrogate pair (no character)');

    let dims: string | null = null;
    if (c.dims !== undefined && c.dims !== null) {
      if (typeof c.dims !== 'object' || Array.isArray(c.dims))
        fail('dims', `expected an object, got ${typeName(c.dims)}`);
      else if (check) {
        const given = c.dims as Record<string, unknown>;
        const keys = Object.keys(given);
        if (keys.length > 1) keys.sort();
        let picked: Record<string, string> | undefined;
        for (const key of keys) {
          const v = given[key];
          const allowed = check.dims.get(key);
          if (!allowed)
            fail(
              agreedKeys.has(key) ? `dims.${key}` : 'dims',
              `a dimension ${check.kpi.id} does not have${check.dims.size ? `; agreed: ${[...check.dims.keys()].join(', ')}` : ''}`,
            );
          else if (typeof v !== 'string') fail(`dims.${key}`, `expected a string, got ${typeName(v)}`);
          else if (!allowed.has(v)) fail(`dims.${key}`, `not an agreed value; agreed: ${[...allowed].join(', ')}`);
          else (picked ??= {})[key] = v;
        }
        if (picked && bad === 0) {
          if (keys.length === 1) {
            const k = `${keys[0]}\u0000${picked[keys[0]!]}`;
            dims = singleDims.get(k) ?? null;
            if (dims === null) singleDims.set(k, (dims = JSON.stringify(picked)));
          } else dims = JSON.stringify(picked);
        }
      }
    }

    if (bad > 0) {
      errors.rejectedRows++;
      return null;
    }
    out.kpi = c.kpi as string;
    out.atMs = atMs;
    out.value = c.value as number;
    out.subject = c.subject as string;
    out.dims = dims;
    return out;
  };
}
