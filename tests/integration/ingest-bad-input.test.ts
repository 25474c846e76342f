import { randomBytes } from 'node:crypto';
import {
  Dictionary,
  Float64,
  Int32,
  Table,
  TimestampMillisecond,
  Utf8,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
  type Vector,
} from 'apache-arrow';
import { Footer as FbFooter } from 'apache-arrow/fb/footer';
import { ByteBuffer } from 'flatbuffers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPseudonymiser } from '../../services/ingest/pseudonymiser.js';
import { rowCount, startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { arrow, csv, jsonBody, leadTimePoints, mediaTypes, ndjson, type BodyKind } from '../helpers/points.js';

/**
 * Hostile and broken uploads to POST /v1/points: every one must be refused with a precise 4xx
 * problem+json naming the field (and row), land nothing, leak no internals, and leave the
 * server serving.
 */

const MAX_BODY = 64_000; // PARITY_MAX_BODY '64kb'

let t: TestRoom;
let acme: string;

beforeAll(async () => {
  t = await startTestRoom({ env: { PARITY_MAX_BODY: '64kb' } });
  acme = await t.token('acme', 'ingest');
});
afterAll(async () => t?.close());

type Kind = BodyKind;
const mediaType = mediaTypes;
const allKinds: Kind[] = ['json', 'ndjson', 'csv', 'arrow'];

interface Res {
  status: number;
  contentType: string;
  text: string;
  body: Record<string, any>;
}

interface PostOpts {
  /** null: no authorization header. */
  token?: string | null;
  query?: string;
  headers?: Record<string, string>;
}

async function post(
  body: string | Uint8Array | ReadableStream<Uint8Array>,
  contentType: string | null,
  opts: PostOpts = {},
): Promise<Res> {
  const token = opts.token === undefined ? acme : opts.token;
  const headers: Record<string, string> = {
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    ...(contentType ? { 'content-type': contentType } : {}),
    ...opts.headers,
  };
  const res = await fetch(`${t.url}/v1/points${opts.query ?? ''}`, {
    method: 'POST',
    headers,
    body,
    ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit);
  const text = await res.text();
  let parsed: Record<string, any> = {};
  try {
    parsed = text ? (JSON.parse(text) as Record<string, any>) : {};
  } catch {
    // left empty: the status and content-type assertions report it
  }
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text, body: parsed };
}

async function counts(): Promise<{ points: number; batches: number }> {
  return { points: await rowCount(t, 'points'), batches: await rowCount(t, 'batches') };
}

async function healthy(): Promise<void> {
  const res = await fetch(`${t.url}/healthz`);
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ status: 'ok' });
}

/** No stack frames, file paths or SQL in what a client sees. */
function expectNoInternals(text: string): void {
  expect(text).not.toMatch(/\n\s+at /);
  expect(text).not.toMatch(/ {4}at /);
  expect(text).not.toContain('node_modules');
  expect(text).not.toMatch(/\/work\/|services\/|\.ts:\d+/);
  expect(text).not.toMatch(/\bSELECT\b|\bINSERT\b|\bBEGIN TRANSACTION\b|\bROLLBACK\b/);
  expect(text).not.toMatch(/Catalog Error|Binder Error|Parser Error|Conversion Error|Constraint Error/);
}

interface Expected {
  status: number;
  /** The top-level `field`; undefined: assert it is absent. */
  field?: string;
  /** Entries that must be in `errors` (row and field). */
  errors?: { row?: number; field: string }[];
  /** Strings the response must not contain (raw subjects). */
  notEchoed?: string[];
}

/** Sends a request that must be refused: checks the problem document, that nothing landed and the server still answers. */
async function expectRefused(send: () => Promise<Res>, exp: Expected): Promise<Res> {
  const before = await counts();
  const r = await send();
  expect(r.status, r.text.slice(0, 500)).toBe(exp.status);
  expect(r.contentType).toMatch(/^application\/problem\+json/);
  expect(r.body['status']).toBe(exp.status);
  expect(typeof r.body['title']).toBe('string');
  expect(r.body['field']).toBe(exp.field);
  if (exp.errors) {
    expect(r.body['errors']).toEqual(expect.arrayContaining(exp.errors.map((e) => expect.objectContaining(e))));
    // Every error entry is a field error with a message, and rows are only given where rows exist.
    for (const e of r.body['errors'] as Record<string, unknown>[]) {
      expect(typeof e['field']).toBe('string');
      expect(typeof e['message']).toBe('string');
    }
  }
  if (exp.status === 422 && exp.errors?.some((e) => e.row !== undefined && e.row > 1)) {
    expect(r.body['accepted']).toBe(0);
    expect(r.body['rejected']).toBeGreaterThanOrEqual(1);
  }
  for (const s of exp.notEchoed ?? []) expect(r.text).not.toContain(s);
  expectNoInternals(r.text);
  expect(await counts()).toEqual(before);
  await healthy();
  return r;
}

// ---------------------------------------------------------------- encoders for arbitrary points

type Raw = Record<string, unknown>;
const good: Raw = {
  kpi: 'lead_time',
  at: '2026-11-01T10:00:00Z',
  value: 3,
  subject: 'S-GOOD-1',
  dims: { region: 'north' },
};

function encode(kind: Kind, rows: Raw[]): string | Uint8Array {
  switch (kind) {
    case 'json':
      return JSON.stringify({ points: rows });
    case 'ndjson':
      return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
    case 'csv': {
      const cell = (v: unknown) => {
        const s = v === undefined || v === null ? '' : String(v);
        return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
      };
      const lines = ['kpi,at,value,subject,region'];
      for (const r of rows)
        lines.push(
          [r['kpi'], r['at'], r['value'], r['subject'], (r['dims'] as Raw | undefined)?.['region']].map(cell).join(','),
        );
      return lines.join('\n') + '\n';
    }
    case 'arrow': {
      const str = (k: string) =>
        vectorFromArray(
          rows.map((r) => (r[k] as string | undefined) ?? null),
          new Utf8(),
        );
      return arrowTable({
        kpi: str('kpi'),
        at: str('at'),
        value: vectorFromArray(
          rows.map((r) => r['value'] as number),
          new Float64(),
        ),
        subject: str('subject'),
        region: vectorFromArray(
          rows.map((r) => ((r['dims'] as Raw | undefined)?.['region'] as string | undefined) ?? null),
          new Utf8(),
        ),
      });
    }
  }
}

function arrowTable(cols: Record<string, Vector>): Uint8Array {
  return tableToIPC(new Table(cols), 'stream');
}

/** The row number the bad point (second in the body) carries: CSV counts the header line. */
const secondRow = (kind: Kind) => (kind === 'csv' ? 3 : 2);

const longSubject = 'LONGSUBJ-' + 'x'.repeat(10_000 - 9);
const { subject: _omit, ...noSubject } = good;
const { kpi: _omitKpi, ...noKpi } = good;

interface RowCase {
  name: string;
  bad: Raw;
  field: string;
  kinds: Kind[];
  notEchoed?: string[];
}

const rowCases: RowCase[] = [
  { name: 'unknown KPI', bad: { ...good, kpi: 'nope' }, field: 'kpi', kinds: allKinds },
  { name: 'SQL-looking KPI', bad: { ...good, kpi: "lead_time'; DROP TABLE points;--" }, field: 'kpi', kinds: allKinds },
  { name: 'missing KPI', bad: noKpi, field: 'kpi', kinds: ['json', 'ndjson', 'csv'] },
  { name: 'kpi as a number', bad: { ...good, kpi: 42 }, field: 'kpi', kinds: ['json', 'ndjson'] },
  { name: 'value as a numeric string', bad: { ...good, value: '3' }, field: 'value', kinds: ['json', 'ndjson'] },
  { name: 'value "abc"', bad: { ...good, value: 'abc' }, field: 'value', kinds: ['json', 'ndjson', 'csv'] },
  { name: 'value "NaN" (string)', bad: { ...good, value: 'NaN' }, field: 'value', kinds: ['json', 'csv'] },
  { name: 'value "Infinity" (string)', bad: { ...good, value: 'Infinity' }, field: 'value', kinds: ['csv'] },
  { name: 'value "-Infinity" (string)', bad: { ...good, value: '-Infinity' }, field: 'value', kinds: ['csv'] },
  { name: 'value 1e999 (overflows to Infinity)', bad: { ...good, value: '1e999' }, field: 'value', kinds: ['csv'] },
  { name: 'value NaN (Float64)', bad: { ...good, value: NaN }, field: 'value', kinds: ['arrow'] },
  { name: 'value Infinity (Float64)', bad: { ...good, value: Infinity }, field: 'value', kinds: ['arrow'] },
  { name: 'value -Infinity (Float64)', bad: { ...good, value: -Infinity }, field: 'value', kinds: ['arrow'] },
  { name: 'value null', bad: { ...good, value: null }, field: 'value', kinds: ['json', 'ndjson'] },
  { name: 'dims as an array', bad: { ...good, dims: ['north'] }, field: 'dims', kinds: ['json', 'ndjson'] },
  { name: 'dims as a string', bad: { ...good, dims: 'north' }, field: 'dims', kinds: ['json', 'ndjson'] },
  {
    name: 'a dimension value as a number',
    bad: { ...good, dims: { region: 7 } },
    field: 'dims.region',
    kinds: ['json', 'ndjson'],
  },
  {
    name: 'unknown dimension key',
    bad: { ...good, dims: { color: 'red' } },
    field: 'dims', // the key came with the body: not echoed
    kinds: ['json', 'ndjson'],
  },
  {
    name: 'unknown dimension value',
    bad: { ...good, dims: { region: 'west' } },
    field: 'dims.region',
    kinds: allKinds,
  },
  {
    name: 'a dimension on a KPI without dimensions (compliance)',
    bad: { ...good, kpi: 'compliance', value: 1, dims: { region: 'north' } },
    field: 'dims.region',
    kinds: allKinds,
  },
  {
    name: 'a 10,000-character subject (not echoed)',
    bad: { ...good, subject: longSubject },
    field: 'subject',
    kinds: allKinds,
    notEchoed: ['LONGSUBJ', 'x'.repeat(30)],
  },
  { name: 'missing subject', bad: noSubject, field: 'subject', kinds: allKinds },
  { name: 'empty subject', bad: { ...good, subject: '' }, field: 'subject', kinds: ['json', 'ndjson'] },
  // Every blank subject would be one subject, one pseudonym.
  { name: 'blank subject', bad: { ...good, subject: '   ' }, field: 'subject', kinds: allKinds },
  {
    name: 'subject of a tab and spaces',
    bad: { ...good, subject: ' \t ' },
    field: 'subject',
    kinds: ['json', 'ndjson'],
  },
  { name: 'subject as a number', bad: { ...good, subject: 12345 }, field: 'subject', kinds: ['json', 'ndjson'] },
  {
    name: 'subject with a control character (not echoed)',
    bad: { ...good, subject: 'CTRLSUBJ\u0000x' },
    field: 'subject',
    kinds: ['json', 'ndjson', 'arrow'],
    notEchoed: ['CTRLSUBJ'],
  },
  {
    // JSON escapes can write half a surrogate pair; stored as U+FFFD, two subjects would be one.
    name: 'subject with half a surrogate pair (not echoed)',
    bad: { ...good, subject: 'SURRSUBJ\ud800x' },
    field: 'subject',
    kinds: ['json', 'ndjson'],
    notEchoed: ['SURRSUBJ'],
  },
  { name: '`at` without an offset', bad: { ...good, at: '2026-11-01T10:00:00' }, field: 'at', kinds: allKinds },
  { name: '`at` on an impossible date', bad: { ...good, at: '2026-02-30T10:00:00Z' }, field: 'at', kinds: allKinds },
  { name: '`at` at hour 24', bad: { ...good, at: '2026-11-01T24:00:00Z' }, field: 'at', kinds: ['json', 'csv'] },
  { name: '`at` in the future (2027)', bad: { ...good, at: '2027-01-01T00:00:00Z' }, field: 'at', kinds: allKinds },
  { name: '`at` before 2000', bad: { ...good, at: '1999-12-31T23:59:59Z' }, field: 'at', kinds: ['json', 'ndjson'] },
  {
    name: '`at` as epoch milliseconds',
    bad: { ...good, at: 1_790_000_000_000 },
    field: 'at',
    kinds: ['json', 'ndjson'],
  },
  {
    name: 'rate KPI (error_rate) with value 0.5',
    bad: { ...good, kpi: 'error_rate', value: 0.5 },
    field: 'value',
    kinds: allKinds,
  },
  {
    name: 'value outside the range (customer_value 11)',
    bad: { ...good, kpi: 'customer_value', value: 11 },
    field: 'value',
    kinds: allKinds,
  },
  { name: 'value below the range (lead_time -1)', bad: { ...good, value: -1 }, field: 'value', kinds: allKinds },
  // Its name came with the body: not echoed (a misplaced subject would be, #13).
  { name: 'an unknown field in a point', bad: { ...good, colour: 'red' }, field: '(field)', kinds: ['json', 'ndjson'] },
];

describe('row-level violations of the agreement → 422 naming the field and row; nothing lands', () => {
  for (const c of rowCases) {
    for (const kind of c.kinds) {
      it(`${c.name} (${kind})`, async () => {
        const body = encode(kind, [good, c.bad]);
        const r = await expectRefused(() => post(body, mediaType[kind]), {
          status: 422,
          field: c.field,
          errors: [{ row: secondRow(kind), field: c.field }],
          notEchoed: c.notEchoed,
        });
        expect(r.body['rejected']).toBe(1);
        // Only the bad row is reported: the good one in front of it has no error.
        expect((r.body['errors'] as { row: number }[]).every((e) => e.row === secondRow(kind))).toBe(true);
      });
    }
  }
});

// ---------------------------------------------------------------- body-level cases

const goodLine = JSON.stringify(good);

interface BodyCase {
  name: string;
  type: string | null;
  body: string | Uint8Array;
  exp: Expected;
  query?: string;
}

const twoBatchArrow = arrow(leadTimePoints(200, 'TRUNC'));

/** A stream of two record batches of valid points, cut `extra` bytes after the end of the first. */
function cutAfterFirstBatch(extra: number): Uint8Array {
  const batch = tableFromIPC(arrow(leadTimePoints(6, 'CUT'))).batches[0]!;
  const first = tableToIPC(new Table([batch.slice(0, 3)]), 'stream');
  const both = tableToIPC(new Table([batch.slice(0, 3), batch.slice(3)]), 'stream');
  // [schema][batch 1][EOS] is a prefix of [schema][batch 1][batch 2][EOS] up to the EOS.
  const boundary = first.length - 8;
  if (
    !Buffer.from(both.subarray(0, boundary)).equals(Buffer.from(first.subarray(0, boundary))) ||
    tableFromIPC(both).numRows !== 6
  ) {
    throw new Error('test setup: the two-batch stream does not start with the one-batch stream');
  }
  return both.subarray(0, boundary + extra);
}

/**
 * An Arrow file of valid points (its KPI column dictionary-encoded) made hostile as a client's fuzz
 * found: `header`, the first record batch's metadata with a byte of its flatbuffer root changed
 * (a message of no kind the reader knows); `footer`, the footer's record batch block pointed at
 * the dictionary batch. apache-arrow's file reader read either again and again, for good.
 */
function hostileArrowFile(how: 'header' | 'footer'): Uint8Array {
  const pts = leadTimePoints(3, `HOSTILE-${how}`);
  const file = Buffer.from(
    tableToIPC(
      new Table({
        kpi: vectorFromArray(
          pts.map((p) => p.kpi),
          new Dictionary(new Utf8(), new Int32()),
        ),
        at: vectorFromArray(
          pts.map((p) => p.at),
          new Utf8(),
        ),
        value: vectorFromArray(
          pts.map((p) => p.value),
          new Float64(),
        ),
        subject: vectorFromArray(
          pts.map((p) => p.subject),
          new Utf8(),
        ),
      }),
      'file',
    ),
  );
  const length = file.readInt32LE(file.length - 10);
  const start = file.length - 10 - length;
  const footer = FbFooter.getRootAsFooter(new ByteBuffer(new Uint8Array(file.buffer, file.byteOffset + start, length)));
  const batch = footer.recordBatches(0)!;
  const at = (block: typeof batch) => start + (block as unknown as { bb_pos: number }).bb_pos;
  if (how === 'footer') file.writeBigInt64LE(footer.dictionaries(0)!.offset(), at(batch));
  // The batch's message: continuation marker, metadata length, then the flatbuffer's root offset.
  else file.writeUInt8(file.readUInt8(Number(batch.offset()) + 9) ^ 0xe7, Number(batch.offset()) + 9);
  return file;
}

const bodyCases: BodyCase[] = [
  // JSON that cannot be decoded or is not {"points": [...]}
  {
    name: 'malformed JSON',
    type: 'application/json',
    body: '{"points": [ {"kpi": ',
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON with a broken element after a good one',
    type: 'application/json',
    body: `{"points": [${goodLine}, {"kpi": "lead_time",, }]}`,
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON with a trailing comma in the points array (nothing lands)',
    type: 'application/json',
    body: `{"points": [${goodLine},]}`,
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON with a no-break space between "points" and its colon (not JSON whitespace)',
    type: 'application/json',
    body: `{"points"\u00a0: [${goodLine}]}`,
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON with a literal NaN (not JSON; the subject is not echoed)',
    type: 'application/json',
    body: `{"points": [{"kpi":"lead_time","at":"2026-11-01T10:00:00Z","subject":"NANSUBJ-1","value":NaN}]}`,
    exp: { status: 400, field: 'body', notEchoed: ['NANSUBJ'] },
  },
  {
    name: 'JSON array at the top level',
    type: 'application/json',
    body: `[${goodLine}]`,
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON extra top-level field before points',
    type: 'application/json',
    body: `{"extra": 1, "points": [${goodLine}]}`,
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON extra top-level field after points',
    type: 'application/json',
    body: `{"points": [${goodLine}], "extra": 1}`,
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON a second "points" field',
    type: 'application/json',
    body: `{"points": [${goodLine}], "points": []}`,
    exp: { status: 400, field: 'points' },
  },
  {
    name: 'JSON with text after the closing brace',
    type: 'application/json',
    body: `{"points": [${goodLine}]} {}`,
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON points as an object',
    type: 'application/json',
    body: `{"points": ${goodLine}}`,
    exp: { status: 400, field: 'points' },
  },
  { name: 'JSON a bare string', type: 'application/json', body: '"points"', exp: { status: 400, field: 'body' } },
  {
    name: 'JSON with an empty points array',
    type: 'application/json',
    body: '{"points": []}',
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'JSON points holding a number',
    type: 'application/json',
    body: `{"points": [${goodLine}, 5]}`,
    exp: { status: 422, field: '(point)', errors: [{ row: 2, field: '(point)' }] },
  },
  {
    name: 'JSON points holding null',
    type: 'application/json',
    body: `{"points": [${goodLine}, null]}`,
    exp: { status: 422, field: '(point)', errors: [{ row: 2, field: '(point)' }] },
  },
  {
    name: 'JSON points holding an array',
    type: 'application/json',
    body: `{"points": [${goodLine}, []]}`,
    exp: { status: 422, field: '(point)', errors: [{ row: 2, field: '(point)' }] },
  },

  // NDJSON lines that are not JSON are row errors
  {
    name: 'NDJSON with the last line cut mid-object',
    type: 'application/x-ndjson',
    body: `${goodLine}\n${goodLine}\n{"kpi":"lead_time","at":"2026-11-01T1`,
    exp: { status: 422, field: '(line)', errors: [{ row: 3, field: '(line)' }] },
  },
  {
    name: 'NDJSON NaN (not JSON; the subject is not echoed)',
    type: 'application/x-ndjson',
    body: `${goodLine}\n{"kpi":"lead_time","at":"2026-11-01T10:00:00Z","subject":"NANSUBJ-1","value":NaN}\n`,
    exp: { status: 422, field: '(line)', errors: [{ row: 2, field: '(line)' }], notEchoed: ['NANSUBJ'] },
  },
  {
    name: 'NDJSON with an unquoted subject (not JSON; the subject is not echoed)',
    type: 'application/x-ndjson',
    body: `${goodLine}\n{"kpi":"lead_time","at":"2026-11-01T10:00:00Z","value":3,"subject":LEAKSUBJ-1}\n`,
    exp: { status: 422, field: '(line)', errors: [{ row: 2, field: '(line)' }], notEchoed: ['LEAKSUBJ'] },
  },
  {
    name: 'JSON with an unquoted subject (the subject is not echoed)',
    type: 'application/json',
    body: `{"points": [${goodLine}, {"kpi":"lead_time","at":"2026-11-01T10:00:00Z","value":3,"subject":LEAKSUBJ-1}]}`,
    exp: { status: 400, field: 'body', notEchoed: ['LEAKSUBJ'] },
  },
  {
    name: 'NDJSON Infinity (not JSON)',
    type: 'application/x-ndjson',
    body: `${goodLine}\n{"kpi":"lead_time","at":"2026-11-01T10:00:00Z","subject":"INFSUBJ-1","value":Infinity}\n`,
    exp: { status: 422, field: '(line)', errors: [{ row: 2, field: '(line)' }], notEchoed: ['INFSUBJ'] },
  },
  {
    name: 'NDJSON a line that is an array',
    type: 'application/x-ndjson',
    body: `${goodLine}\n[1,2]\n`,
    exp: { status: 422, field: '(point)', errors: [{ row: 2, field: '(point)' }] },
  },
  {
    name: 'NDJSON a point naming its KPI twice (JSON.parse would keep the last)',
    type: 'application/x-ndjson',
    body: `${goodLine}\n${goodLine.replace('{', '{"kpi":"error_rate",')}\n`,
    exp: { status: 422, field: 'kpi', errors: [{ row: 2, field: 'kpi' }] },
  },
  {
    name: 'JSON a point giving a dimension twice, once spelled with an escape',
    type: 'application/json',
    body: `{"points": [${goodLine.replace('"region":"north"', '"region":"north","regio\\u006e":"south"')}]}`,
    exp: { status: 422, field: 'dims', errors: [{ row: 1, field: 'dims' }] },
  },
  {
    name: 'NDJSON a JSON document {"points":[...]} sent as NDJSON',
    type: 'application/x-ndjson',
    body: jsonBody(leadTimePoints(2)),
    exp: { status: 422, field: 'points', errors: [{ row: 1, field: 'points' }] },
  },

  // CSV structure
  {
    name: 'CSV without a subject column',
    type: 'text/csv',
    body: 'kpi,at,value,region\nlead_time,2026-11-01T10:00:00Z,3,north\n',
    exp: { status: 422, field: 'subject', errors: [{ row: 1, field: 'subject' }] },
  },
  {
    name: 'CSV with an unknown extra column',
    type: 'text/csv',
    body: 'kpi,at,value,subject,region,color\nlead_time,2026-11-01T10:00:00Z,3,S-1,north,red\n',
    exp: { status: 422, field: 'column 6', errors: [{ row: 1, field: 'column 6' }] },
  },
  {
    name: 'CSV with a duplicate column',
    type: 'text/csv',
    body: 'kpi,at,value,subject,value\nlead_time,2026-11-01T10:00:00Z,3,S-1,4\n',
    exp: { status: 422, field: 'value', errors: [{ row: 1, field: 'value' }] },
  },
  {
    name: 'CSV with a partner column',
    type: 'text/csv',
    body: 'kpi,at,value,subject,partner\nlead_time,2026-11-01T10:00:00Z,3,S-1,globex\n',
    exp: { status: 422, field: 'partner', errors: [{ row: 1, field: 'partner' }] },
  },
  {
    name: 'CSV row with too many cells',
    type: 'text/csv',
    body: 'kpi,at,value,subject,region\nlead_time,2026-11-01T10:00:00Z,3,S-1,north\nlead_time,2026-11-01T10:00:00Z,3,S-2,north,extra\n',
    exp: { status: 422, field: '(line)', errors: [{ row: 3, field: '(line)' }] },
  },
  {
    name: 'CSV row with too few cells',
    type: 'text/csv',
    body: 'kpi,at,value,subject,region\nlead_time,2026-11-01T10:00:00Z,3,S-1,north\nlead_time,2026-11-01T10:00:00Z,3\n',
    exp: { status: 422, field: '(line)', errors: [{ row: 3, field: '(line)' }] },
  },
  {
    name: 'CSV with a stray quote inside a subject (malformed; not echoed)',
    type: 'text/csv',
    body: 'kpi,at,value,subject,region\nlead_time,2026-11-01T10:00:00Z,3,QUOTESUBJ"1,north\n',
    exp: { status: 400, field: 'body', notEchoed: ['QUOTESUBJ'] },
  },
  {
    name: 'CSV with an unterminated quoted field',
    type: 'text/csv',
    body: 'kpi,at,value,subject,region\nlead_time,2026-11-01T10:00:00Z,3,"OPENSUBJ-1,north\n',
    exp: { status: 400, field: 'body', notEchoed: ['OPENSUBJ'] },
  },
  {
    name: 'CSV with a header only',
    type: 'text/csv',
    body: 'kpi,at,value,subject,region\n',
    exp: { status: 400, field: 'body' },
  },

  // Invalid UTF-8
  ...(['application/json', 'application/x-ndjson', 'text/csv'] as const).map((type) => ({
    name: `invalid UTF-8 bytes (${type})`,
    type,
    body: Buffer.from([0x7b, 0xff, 0xfe]),
    exp: { status: 400, field: 'body' },
  })),
  {
    name: 'invalid UTF-8 inside a CSV subject after a good row',
    type: 'text/csv',
    body: Buffer.concat([
      Buffer.from(
        'kpi,at,value,subject,region\nlead_time,2026-11-01T10:00:00Z,3,S-1,north\nlead_time,2026-11-01T10:00:00Z,3,S-',
      ),
      Buffer.from([0xc3, 0x28]),
      Buffer.from(',north\n'),
    ]),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'a body ending inside a UTF-8 character (NDJSON)',
    type: 'application/x-ndjson',
    body: Buffer.concat([Buffer.from(`${goodLine}\n{"subject":"`), Buffer.from([0xe2, 0x82])]),
    exp: { status: 400, field: 'body' },
  },

  // Empty bodies
  ...Object.values(mediaType).map((type) => ({
    name: `an empty body (${type})`,
    type,
    body: '',
    exp: { status: 400, field: 'body' },
  })),
  {
    name: 'NDJSON with only blank lines',
    type: 'application/x-ndjson',
    body: '\n\n  \r\n\n',
    exp: { status: 400, field: 'body' },
  },

  // Arrow
  {
    name: 'Arrow: random bytes',
    type: mediaType.arrow,
    body: new Uint8Array(randomBytes(4096)),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: a valid stream truncated in the middle',
    type: mediaType.arrow,
    body: twoBatchArrow.subarray(0, Math.floor(twoBatchArrow.length / 2)),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: a valid stream with its last byte cut',
    type: mediaType.arrow,
    body: twoBatchArrow.subarray(0, twoBatchArrow.length - 9),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: a two-batch stream cut right after the first batch (no end-of-stream marker)',
    type: mediaType.arrow,
    body: cutAfterFirstBatch(0),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: a two-batch stream cut 4 bytes into the second message',
    type: mediaType.arrow,
    body: cutAfterFirstBatch(4),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: an Arrow file cut short',
    type: mediaType.arrow,
    body: (() => {
      const f = tableToIPC(tableFromIPC(arrow(leadTimePoints(4, 'FILECUT'))), 'file');
      return f.subarray(0, f.length - 40);
    })(),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: a file whose record batch is of no message kind (one byte of its header changed)',
    type: mediaType.arrow,
    body: hostileArrowFile('header'),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: a file whose footer points its record batch at the dictionary batch',
    type: mediaType.arrow,
    body: hostileArrowFile('footer'),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: JSON sent as Arrow',
    type: mediaType.arrow,
    body: jsonBody(leadTimePoints(3)),
    exp: { status: 400, field: 'body' },
  },
  {
    name: 'Arrow: missing subject column',
    type: mediaType.arrow,
    body: arrowTable({
      kpi: vectorFromArray(['lead_time'], new Utf8()),
      at: vectorFromArray(['2026-11-01T10:00:00Z'], new Utf8()),
      value: vectorFromArray([3], new Float64()),
    }),
    exp: { status: 422, field: 'subject', errors: [{ field: 'subject' }] },
  },
  {
    name: 'Arrow: an unknown extra column',
    type: mediaType.arrow,
    body: arrowTable({
      kpi: vectorFromArray(['lead_time'], new Utf8()),
      at: vectorFromArray(['2026-11-01T10:00:00Z'], new Utf8()),
      value: vectorFromArray([3], new Float64()),
      subject: vectorFromArray(['S-1'], new Utf8()),
      color: vectorFromArray(['red'], new Utf8()),
    }),
    exp: { status: 422, field: 'column 5', errors: [{ field: 'column 5' }] },
  },
  {
    name: 'Arrow: a timestamp `at` without a time zone',
    type: mediaType.arrow,
    body: arrowTable({
      kpi: vectorFromArray(['lead_time'], new Utf8()),
      at: vectorFromArray([Date.parse('2026-11-01T10:00:00Z')], new TimestampMillisecond()),
      value: vectorFromArray([3], new Float64()),
      subject: vectorFromArray(['S-1'], new Utf8()),
    }),
    exp: { status: 422, field: 'at', errors: [{ field: 'at' }] },
  },
  {
    name: 'Arrow: a timestamp `at` in the future',
    type: mediaType.arrow,
    body: arrowTable({
      kpi: vectorFromArray(['lead_time', 'lead_time'], new Utf8()),
      at: vectorFromArray(
        [Date.parse('2026-11-01T10:00:00Z'), Date.parse('2027-03-01T10:00:00Z')],
        new TimestampMillisecond('UTC'),
      ),
      value: vectorFromArray([3, 4], new Float64()),
      subject: vectorFromArray(['S-1', 'S-2'], new Utf8()),
    }),
    exp: { status: 422, field: 'at', errors: [{ row: 2, field: 'at' }] },
  },
  {
    name: 'Arrow: a dimension column of numbers',
    type: mediaType.arrow,
    body: arrowTable({
      kpi: vectorFromArray(['lead_time', 'lead_time'], new Utf8()),
      at: vectorFromArray(['2026-11-01T10:00:00Z', '2026-11-01T11:00:00Z'], new Utf8()),
      value: vectorFromArray([3, 4], new Float64()),
      subject: vectorFromArray(['S-1', 'S-2'], new Utf8()),
      region: vectorFromArray([7, 8], new Int32()),
    }),
    exp: {
      status: 422,
      field: 'dims.region',
      errors: [
        { row: 1, field: 'dims.region' },
        { row: 2, field: 'dims.region' },
      ],
    },
  },
  {
    name: 'Arrow: value as a string column',
    type: mediaType.arrow,
    body: arrowTable({
      kpi: vectorFromArray(['lead_time'], new Utf8()),
      at: vectorFromArray(['2026-11-01T10:00:00Z'], new Utf8()),
      value: vectorFromArray(['3'], new Utf8()),
      subject: vectorFromArray(['S-1'], new Utf8()),
    }),
    exp: { status: 422, field: 'value', errors: [{ row: 1, field: 'value' }] },
  },
];

describe('undecodable or misshapen bodies', () => {
  for (const c of bodyCases) {
    it(`${c.name} → ${c.exp.status}`, async () => {
      await expectRefused(() => post(c.body, c.type, { query: c.query }), c.exp);
    });
  }

  it('a CSV header of thousands of unknown columns gets a short answer: five named, the first 100 listed', async () => {
    const columns = Array.from({ length: 10_000 }, (_, i) => `c${i}`);
    const r = await post(`kpi,at,value,subject,${columns.join(',')}\n`, mediaType.csv);
    expect(r.status).toBe(422);
    expect(r.body['field']).toBe('column 5');
    expect(r.body['errors']).toHaveLength(100);
    expect(r.body['errorsTruncated']).toBe(true);
    expect(r.body['detail']).toMatch(/; and 9995 more$/);
    expect(r.text.length).toBeLessThan(20_000);
  });

  it('a JSON body whose extra top-level field arrives in a later chunk is refused all the same', async () => {
    for (const [first, rest, field] of [
      [`{"points": [${goodLine}],`, ' "extra": 1}', 'body'],
      [`{"points": [${goodLine}], "ext`, 'ra": 1}', 'body'],
      [`{"points": [${goodLine}],`, ' "points": []}', 'points'],
      [`{"points": [${goodLine}],`, ' 1}', 'body'],
      [`{"points": [${goodLine}],`, '', 'body'],
    ] as const) {
      const parts = [Buffer.from(first), Buffer.from(rest)];
      const stream = new ReadableStream<Uint8Array>({
        async pull(ctl) {
          const next = parts.shift();
          if (!next) return ctl.close();
          ctl.enqueue(next);
          await new Promise((r) => setTimeout(r, 30));
        },
      });
      await expectRefused(() => post(stream, mediaType.json), { status: 400, field });
    }
  });
});

// ---------------------------------------------------------------- transport-level cases

describe('content type, size, query, headers and auth', () => {
  const small = ndjson(leadTimePoints(2, 'TRANS'));

  for (const type of [
    'text/plain',
    'application/xml',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
  ]) {
    it(`content type ${type} → 415`, async () => {
      const r = await expectRefused(() => post(small, type), { status: 415, field: 'content-type' });
      expect(r.body['detail']).toContain('application/x-ndjson');
    });
  }

  it('no content type → 415', async () => {
    await expectRefused(() => post(Buffer.from(small), null), { status: 415, field: 'content-type' });
  });

  it('an oversize body with a content-length → 413 before reading it', async () => {
    const big = ndjson(leadTimePoints(2000, 'BIG'));
    expect(big.length).toBeGreaterThan(3 * MAX_BODY);
    const r = await expectRefused(() => post(big, mediaType.ndjson), { status: 413, field: 'body' });
    expect(r.body['limit']).toBe(MAX_BODY);
  });

  for (const kind of ['ndjson', 'json', 'csv', 'arrow'] as const) {
    it(`an oversize ${kind} body sent chunked (no content-length) → 413 from the streaming counter`, async () => {
      const payload = Buffer.from(
        kind === 'arrow'
          ? arrow(leadTimePoints(5000, 'CHUNK'))
          : kind === 'csv'
            ? csv(leadTimePoints(5000, 'CHUNK'))
            : kind === 'json'
              ? jsonBody(leadTimePoints(2000, 'CHUNK'))
              : ndjson(leadTimePoints(2000, 'CHUNK')),
      );
      expect(payload.length).toBeGreaterThan(3 * MAX_BODY);
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < payload.length; i += 8192) chunks.push(payload.subarray(i, i + 8192));
      let i = 0;
      const stream = () =>
        new ReadableStream<Uint8Array>({
          pull(ctl) {
            if (i < chunks.length) ctl.enqueue(chunks[i++]!);
            else ctl.close();
          },
        });
      const r = await expectRefused(() => post(stream(), mediaType[kind]), { status: 413, field: 'body' });
      expect(r.body['limit']).toBe(MAX_BODY);
    });
  }

  it('a body just under the limit, sent chunked, still lands', async () => {
    const pts = leadTimePoints(400, 'UNDER');
    const payload = Buffer.from(ndjson(pts));
    expect(payload.length).toBeLessThan(MAX_BODY);
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (!sent) {
          ctl.enqueue(payload.subarray(0, 1000));
          ctl.enqueue(payload.subarray(1000));
          sent = true;
        } else ctl.close();
      },
    });
    const before = await counts();
    const r = await post(stream, mediaType.ndjson);
    expect(r.status, r.text).toBe(202);
    expect(r.body['accepted']).toBe(400);
    expect(await counts()).toEqual({ points: before.points + 400, batches: before.batches + 1 });
  });

  it('?partial=yes → 400 naming the parameter', async () => {
    await expectRefused(() => post(small, mediaType.ndjson, { query: '?partial=yes' }), {
      status: 400,
      field: 'querystring.partial',
      errors: [{ field: 'querystring.partial' }],
    });
  });

  it('an unknown query parameter → 400 naming it', async () => {
    const r = await expectRefused(() => post(small, mediaType.ndjson, { query: '?foo=1' }), {
      status: 400,
      field: 'querystring.foo',
      errors: [{ field: 'querystring.foo' }],
    });
    expect(r.body['detail']).toContain('foo');
  });

  for (const [name, key] of [
    ['300 characters', 'k'.repeat(300)],
    ['a space', 'two words'],
    ['nothing in it', ''],
  ] as const) {
    it(`an Idempotency-Key with ${name} → 400 naming the header`, async () => {
      await expectRefused(() => post(small, mediaType.ndjson, { headers: { 'idempotency-key': key } }), {
        status: 400,
        field: 'headers.idempotency-key',
        errors: [{ field: 'headers.idempotency-key' }],
      });
    });
  }

  it('an analyst token → 403', async () => {
    const analyst = await t.token('acme', 'analyst');
    const r = await expectRefused(() => post(small, mediaType.ndjson, { token: analyst }), { status: 403 });
    expect(r.body['detail']).toContain('ingest');
  });

  for (const role of ['admin', 'owner', 'steering'] as const) {
    it(`a partner's ${role} token → 403`, async () => {
      const tok = await t.token('acme', role);
      await expectRefused(() => post(small, mediaType.ndjson, { token: tok }), { status: 403 });
    });
  }

  it('an operator token (no partner) → 403', async () => {
    const operator = await t.token(null, 'operator');
    await expectRefused(() => post(small, mediaType.ndjson, { token: operator }), { status: 403 });
  });

  it('no token → 401, also with a bad body and an oversize one', async () => {
    await expectRefused(() => post(small, mediaType.ndjson, { token: null }), { status: 401 });
    await expectRefused(() => post('{"points": [', mediaType.json, { token: null }), { status: 401 });
    await expectRefused(() => post(ndjson(leadTimePoints(2000, 'NOAUTH')), mediaType.ndjson, { token: null }), {
      status: 401,
    });
  });
});

// ---------------------------------------------------------------- many errors

describe('error lists', () => {
  const badPoint = (i: number) => ({ ...good, kpi: 'nope', subject: `MANY-${i}` });

  it('150 invalid rows → 422 with the first 100 errors, errorsTruncated and the true count', async () => {
    const rows = [good, ...Array.from({ length: 150 }, (_, i) => badPoint(i))];
    for (const kind of ['ndjson', 'csv'] as const) {
      const r = await expectRefused(() => post(encode(kind, rows), mediaType[kind]), {
        status: 422,
        field: 'kpi',
        errors: [{ row: secondRow(kind), field: 'kpi' }],
      });
      expect(r.body['errors']).toHaveLength(100);
      expect(r.body['errorsTruncated']).toBe(true);
      expect(r.body['rejected']).toBe(150);
      expect(r.body['accepted']).toBe(0);
      expect((r.body['errors'] as { row: number }[]).at(-1)!.row).toBe(secondRow(kind) + 99);
    }
  });

  it('rows with two errors each count once in `rejected`; errors are capped at 100', async () => {
    const rows = Array.from({ length: 60 }, (_, i) => ({ ...badPoint(i), at: 'yesterday' }));
    const r = await expectRefused(() => post(encode('ndjson', rows), mediaType.ndjson), {
      status: 422,
      field: 'kpi',
      errors: [
        { row: 1, field: 'kpi' },
        { row: 1, field: 'at' },
      ],
    });
    expect(r.body['errors']).toHaveLength(100);
    expect(r.body['errorsTruncated']).toBe(true);
    expect(r.body['rejected']).toBe(60);
  });

  it('exactly 100 errors are all kept and not marked truncated', async () => {
    const rows = Array.from({ length: 100 }, (_, i) => badPoint(i));
    const r = await expectRefused(() => post(encode('ndjson', rows), mediaType.ndjson), { status: 422, field: 'kpi' });
    expect(r.body['errors']).toHaveLength(100);
    expect(r.body['rejected']).toBe(100);
    expect(r.body['errorsTruncated']).toBe(false);
  });

  it('101 errors: 100 kept and marked truncated', async () => {
    const rows = Array.from({ length: 101 }, (_, i) => badPoint(i));
    const r = await expectRefused(() => post(encode('ndjson', rows), mediaType.ndjson), { status: 422, field: 'kpi' });
    expect(r.body['errors']).toHaveLength(100);
    expect(r.body['rejected']).toBe(101);
    expect(r.body['errorsTruncated']).toBe(true);
  });
});

// ---------------------------------------------------------------- inputs that must be accepted

describe('odd but valid inputs land', () => {
  async function expectLanded(body: string | Uint8Array, type: string, accepted: number, query = '') {
    const before = await counts();
    const r = await post(body, type, { query });
    expect(r.status, r.text.slice(0, 500)).toBe(202);
    expect(r.body).toMatchObject({ accepted, rejected: 0, partner: 'acme' });
    expect(await counts()).toEqual({ points: before.points + accepted, batches: before.batches + 1 });
    return r;
  }

  it('a BOM-prefixed CSV', async () => {
    await expectLanded('\uFEFF' + csv(leadTimePoints(3, 'BOMCSV')), mediaType.csv, 3);
  });

  it('a BOM-prefixed JSON and NDJSON body', async () => {
    await expectLanded('\uFEFF' + jsonBody(leadTimePoints(2, 'BOMJSON')), mediaType.json, 2);
    await expectLanded('\uFEFF' + ndjson(leadTimePoints(2, 'BOMND')), mediaType.ndjson, 2);
  });

  it('CRLF line endings in NDJSON and CSV', async () => {
    await expectLanded(ndjson(leadTimePoints(3, 'CRLFND')).replaceAll('\n', '\r\n'), mediaType.ndjson, 3);
    await expectLanded(csv(leadTimePoints(3, 'CRLFCSV')).replaceAll('\n', '\r\n'), mediaType.csv, 3);
  });

  it('blank and whitespace-only lines in NDJSON are ignored, and row numbers still count them', async () => {
    const [a, b] = leadTimePoints(2, 'BLANK').map((p) => JSON.stringify(p));
    await expectLanded(`\n${a}\n\n   \n\t\r\n${b}`, mediaType.ndjson, 2);
    const r = await expectRefused(
      () => post(`\n${a}\n\n${JSON.stringify({ ...good, kpi: 'nope' })}\n`, mediaType.ndjson),
      { status: 422, field: 'kpi', errors: [{ row: 4, field: 'kpi' }] },
    );
    expect(r.body['rejected']).toBe(1);
  });

  it('a CSV without a trailing newline, with blank lines and with columns in another order', async () => {
    await expectLanded(
      'subject,region,value,at,kpi\r\nCOLS-1,north,3,2026-11-01T10:00:00Z,lead_time\r\n\r\nCOLS-2,,4,2026-11-01T11:00:00Z,lead_time',
      mediaType.csv,
      2,
    );
  });

  it('an Arrow IPC file (ARROW1 magic) as well as a stream', async () => {
    await expectLanded(tableToIPC(tableFromIPC(arrow(leadTimePoints(4, 'ARROWFILE'))), 'file'), mediaType.arrow, 4);
  });

  it('a content type with parameters and in upper case', async () => {
    await expectLanded(jsonBody(leadTimePoints(2, 'CTPARAM')), 'application/json; charset=utf-8', 2);
    await expectLanded(ndjson(leadTimePoints(2, 'CTUPPER')), 'Application/X-NDJSON', 2);
  });

  it('?partial=true lands the good rows of a body with bad ones and reports the rest', async () => {
    const before = await counts();
    const r = await post(encode('ndjson', [good, { ...good, kpi: 'nope' }]), mediaType.ndjson, {
      query: '?partial=true',
    });
    expect(r.status, r.text).toBe(202);
    expect(r.body).toMatchObject({
      accepted: 1,
      rejected: 1,
      errors: [{ row: 2, field: 'kpi', message: expect.any(String) }],
      errorsTruncated: false,
    });
    expect(await counts()).toEqual({ points: before.points + 1, batches: before.batches + 1 });
  });

  it('a SQL-looking subject is an opaque string: it lands pseudonymised and the tables are intact', async () => {
    const subject = "'); DELETE FROM batches; --";
    const before = await counts();
    for (const kind of allKinds) {
      const r = await post(encode(kind, [{ ...good, subject }]), mediaType[kind]);
      expect(r.status, r.text).toBe(202);
      expect(r.text).not.toContain('DELETE');
    }
    expect(await counts()).toEqual({ points: before.points + 4, batches: before.batches + 4 });
    const pseudo = createPseudonymiser(t.room.secret)('acme', subject);
    const c = await t.room.duck.connect();
    try {
      const rows = (
        await c.runAndReadAll(
          'SELECT subject, count(*)::INTEGER AS n FROM points WHERE subject = $1 GROUP BY subject',
          [pseudo],
        )
      ).getRowObjects();
      expect(rows).toEqual([{ subject: pseudo, n: 4 }]);
      const raw = (
        await c.runAndReadAll('SELECT count(*)::INTEGER AS n FROM points WHERE subject = $1', [subject])
      ).getRowObjects();
      expect(raw).toEqual([{ n: 0 }]);
      const tables = (
        await c.runAndReadAll(
          "SELECT table_name FROM information_schema.tables WHERE table_name IN ('points', 'batches') ORDER BY table_name",
        )
      ).getRowObjects();
      expect(tables.map((x) => x['table_name'])).toEqual(['batches', 'points']);
      // Every landed point belongs to a recorded batch and the batch counts add up.
      const sums = (
        await c.runAndReadAll(
          'SELECT (SELECT count(*) FROM points)::INTEGER AS p, (SELECT coalesce(sum(accepted), 0) FROM batches)::INTEGER AS a',
        )
      ).getRowObjects()[0]!;
      expect(sums['p']).toBe(sums['a']);
    } finally {
      t.room.duck.release(c);
    }
  });
});

describe('after all of that', () => {
  it('the server is up and a valid small batch still lands in every content type', async () => {
    await healthy();
    const pts = leadTimePoints(5, 'FINAL');
    for (const kind of allKinds) {
      const before = await counts();
      const body =
        kind === 'json' ? jsonBody(pts) : kind === 'ndjson' ? ndjson(pts) : kind === 'csv' ? csv(pts) : arrow(pts);
      const r = await post(body, mediaType[kind]);
      expect(r.status, r.text).toBe(202);
      expect(r.body).toMatchObject({ accepted: 5, rejected: 0 });
      expect(await counts()).toEqual({ points: before.points + 5, batches: before.batches + 1 });
    }
    const c = await t.room.duck.connect();
    try {
      const sums = (
        await c.runAndReadAll(
          'SELECT (SELECT count(*) FROM points)::INTEGER AS p, (SELECT coalesce(sum(accepted), 0) FROM batches)::INTEGER AS a',
        )
      ).getRowObjects()[0]!;
      expect(sums['p']).toBe(sums['a']);
    } finally {
      t.room.duck.release(c);
    }
  });
});
