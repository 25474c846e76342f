// Issue #13, bounded parsers: generated and mutated bodies straight through the body parsers and
// the point validator, in process — PARITY_PARSER_FUZZ_RUNS (10,000 by default) per content type
// for NDJSON, JSON, CSV and Arrow. Every body either parses or is refused with a 4xx Problem;
// nothing else is thrown, nothing hangs, and no error message carries the marker the body holds.
// Arrow streams get byte and length-word mutations, checked here in process against the framing
// check (declared lengths before any allocation); tests/integration/ingest-arrow-hostile.test.ts
// sends such streams through the listening server too.
import {
  Float64,
  Table,
  TimestampMicrosecond,
  TimestampMillisecond,
  TimestampSecond,
  Utf8,
  makeVector,
  tableToIPC,
  vectorFromArray,
} from 'apache-arrow';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadAgreementFile } from '../../services/platform/agreement-schema.js';
import { MAX_POINT_TEXT, parseBody, type ParsedRow } from '../../services/ingest/body-parsers.js';
import { compileValidator, RowErrors } from '../../services/ingest/point-validator.js';
import { Problem } from '../../services/platform/errors.js';
import { timeout } from '../helpers/timeouts.js';
import { failureOf } from '../helpers/failure-of.js';

const RUNS = Number(process.env['PARITY_PARSER_FUZZ_RUNS'] ?? 10_000);
const r = loadAgreementFile('fixtures/demo-agreement.yaml');
if (!r.ok) throw new Error('demo agreement invalid');
const agreement = r.agreement;
const dims = new Set(agreement.kpis.flatMap((k) => Object.keys(k.dimensions)));

const MARK = 'MRKfuzz42';
const good = {
  kpi: 'lead_time',
  at: '2026-11-20T10:00:00Z',
  value: 4,
  subject: `${MARK}-S`,
  dims: { region: 'north' },
};
const seeds = {
  ndjson: `${JSON.stringify(good)}\n${JSON.stringify({ ...good, value: 7 })}\n`,
  json: JSON.stringify({ points: [good, { ...good, value: 7 }] }),
  csv: `kpi,at,value,subject,region\nlead_time,2026-11-20T10:00:00Z,4,${MARK}-S,north\nlead_time,2026-11-21T10:00:00Z,5,"${MARK}-T",south\n`,
} as const;
type Kind = keyof typeof seeds | 'arrow';

/** A valid Arrow IPC stream of 40 rows, subjects carrying the marker. */
const arrowSeed = tableToIPC(
  new Table({
    kpi: vectorFromArray(
      Array.from({ length: 40 }, () => 'lead_time'),
      new Utf8(),
    ),
    at: vectorFromArray(
      Array.from({ length: 40 }, (_, i) => `2026-11-${17 + (i % 3)}T08:00:00Z`),
      new Utf8(),
    ),
    value: vectorFromArray(
      Array.from({ length: 40 }, (_, i) => i + 0.5),
      new Float64(),
    ),
    subject: vectorFromArray(
      Array.from({ length: 40 }, (_, i) => `${MARK}-${i}`),
      new Utf8(),
    ),
  }),
  'stream',
);

/** A mutation of a binary stream: a byte overwritten, or a 32-bit word set to a hostile length. */
const binaryMutation = fc.oneof(
  fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ at: fc.nat(), word: fc.constantFrom(0x7fffffff, 0xffffffff, 0x10000000, 0x00ffffff, 0, 1, 0x7ffffff8) }),
);

/** A mutation: bytes replaced, inserted or removed, or the body cut, or repeated. */
const mutation = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), text: fc.string({ maxLength: 4 }) }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.oneof(
      fc.constantFrom('"', '{', '}', '[', ']', ',', '\n', '\r\n', '\\', '\u0000', '\uFEFF', ':', '""', MARK, '\uD800'),
      fc.string({ maxLength: 8 }),
    ),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
);

type Mutation = { op: string; at: number; text?: string; n?: number };

function mutate(seed: string, ms: readonly Mutation[]): string {
  let s = seed;
  for (const m of ms) {
    const at = s.length === 0 ? 0 : m.at % (s.length + 1);
    if (m.op === 'set') s = s.slice(0, at) + m.text + s.slice(at + (m.text?.length ?? 0));
    else if (m.op === 'insert') s = s.slice(0, at) + m.text + s.slice(at);
    else if (m.op === 'delete') s = s.slice(0, at) + s.slice(at + (m.n ?? 1));
    else s = s.slice(0, at);
  }
  return s;
}

async function* chunks(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** Parses and validates a body as the worker does: the rows, or the Problem it was refused with. */
async function run(
  kind: Kind,
  body: Buffer,
  chunk: number,
): Promise<{ rows: number; rowErrors: number; problem?: Problem }> {
  const validate = compileValidator(agreement, { now: () => Date.parse('2026-11-23T12:00:00Z'), clockSkewMs: 300_000 });
  const errors = new RowErrors();
  let rows = 0;
  let rowErrors = 0;
  try {
    for await (const batch of parseBody(kind, chunks(body, chunk), dims))
      for (const row of batch) {
        rows++;
        if (row.error) rowErrors++;
        if (row.error && JSON.stringify(row.error).includes(MARK))
          throw new Error(`a parse error echoes: ${JSON.stringify(row.error)}`);
        if (row.candidate) validate(row.candidate, row.row, errors, row.extra);
      }
    for (const e of errors.kept)
      if (JSON.stringify(e).includes(MARK)) throw new Error(`a row error echoes: ${JSON.stringify(e)}`);
    return { rows, rowErrors: rowErrors + errors.rejectedRows };
  } catch (err) {
    if (err instanceof Problem) return { rows, rowErrors, problem: err };
    throw err;
  }
}

/** Counts one outcome: a refusal must be a 4xx Problem whose body does not echo the marker. */
function tally(outcomes: { parsed: number; refused: number }, result: Awaited<ReturnType<typeof run>>): void {
  if (result.problem) {
    outcomes.refused++;
    expect(result.problem.status).toBeGreaterThanOrEqual(400);
    expect(result.problem.status).toBeLessThan(500);
    expect(JSON.stringify(result.problem.body())).not.toContain(MARK);
  } else if (result.rowErrors > 0) outcomes.refused++;
  else outcomes.parsed++;
}

describe('parser fuzz', () => {
  it(
    `${RUNS} mutated Arrow streams: each parses or gets a 4xx, and no message echoes the body`,
    async () => {
      const outcomes = { parsed: 0, refused: 0 };
      await fc.assert(
        fc.asyncProperty(
          fc.array(binaryMutation, { minLength: 1, maxLength: 4 }),
          fc.option(fc.nat(), { nil: undefined }),
          fc.integer({ min: 1, max: 4096 }),
          async (ms, cut, chunk) => {
            const b = Buffer.from(arrowSeed);
            for (const m of ms) {
              const at = m.at % b.length;
              if ('byte' in m) b[at] = m.byte;
              else if (at + 4 <= b.length) b.writeUInt32LE(m.word, at);
            }
            tally(outcomes, await run('arrow', cut === undefined ? b : b.subarray(0, cut % b.length), chunk));
          },
        ),
        { numRuns: RUNS, seed: 1313 },
      );
      expect(outcomes.parsed + outcomes.refused).toBe(RUNS);
      expect(outcomes.refused).toBeGreaterThan(0);
      expect(outcomes.parsed).toBeGreaterThan(0);
    },
    timeout(240_000),
  );

  for (const kind of Object.keys(seeds) as (keyof typeof seeds)[]) {
    it(
      `${RUNS} mutated ${kind} bodies: each parses or gets a 4xx, and no message echoes the body`,
      async () => {
        const outcomes = { parsed: 0, refused: 0 };
        await fc.assert(
          fc.asyncProperty(
            fc.array(mutation, { minLength: 1, maxLength: 5 }),
            fc.integer({ min: 1, max: 64 }),
            async (ms, chunk) => {
              const text = mutate(seeds[kind], ms);
              tally(outcomes, await run(kind, Buffer.from(text, 'utf8'), chunk));
            },
          ),
          { numRuns: RUNS, seed: 13 },
        );
        // Controls: the mutations both broke bodies and left some readable.
        expect(outcomes.parsed + outcomes.refused).toBe(RUNS);
        expect(outcomes.refused).toBeGreaterThan(0);
        expect(outcomes.parsed).toBeGreaterThan(0);
      },
      timeout(300_000),
    );
  }
});

describe('CSV row numbers', () => {
  it('name the line a record ends on, past blank lines, quoted line breaks and chunk edges', async () => {
    const body = [
      'kpi,at,value,subject,region',
      'lead_time,2026-11-20T10:00:00Z,4,S1,north', // line 2
      '',
      'lead_time,2026-11-20T10:00:00Z,4,"S2', // a subject across lines 4–5
      'continued",north',
      'lead_time,2026-11-20T10:00:00Z,oops,S3,north', // line 6
      'lead_time,2026-11-20T10:00:00Z,4,S4', // line 7: a column short
      '',
      '',
      'lead_time,2026-11-20T10:00:00Z,5,S5,south', // line 10
    ].join('\n');
    for (const size of [1, 7, 4096]) {
      const bytes = Buffer.from(body);
      async function* chunks() {
        for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
      }
      const rows = [];
      for await (const batch of parseBody('csv', chunks(), dims)) rows.push(...batch);
      expect(
        rows.map((r) => [r.row, r.candidate?.value ?? r.error?.field]),
        `chunks of ${size} bytes`,
      ).toEqual([
        [2, 4],
        [5, 4],
        [6, 'oops'],
        [7, '(line)'],
        [10, 5],
      ]);
    }
  });

  it('name the header line when the header is wrong, past blank lines before it', async () => {
    async function* body() {
      yield Buffer.from('\n\nkpi,at,value,who,region\nlead_time,2026-11-20T10:00:00Z,4,S1,north\n');
    }
    const err = await failureOf(parseBody('csv', body(), dims));
    expect(err).toBeInstanceOf(Problem);
    const rows = ((err as Problem).extra?.['errors'] as { row: number }[]).map((e) => e.row);
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows)).toEqual(new Set([3]));
  });
});

describe('a point left unfinished is bounded', () => {
  /** A body that starts a point and never ends it: 64 KiB chunks of `filler`, up to 64 MiB; counts the bytes it gave. */
  function endless(start: string, filler: string): { body: AsyncGenerator<Buffer>; given: () => number } {
    let given = 0;
    const chunk = Buffer.from(filler.repeat(Math.ceil(65_536 / filler.length)));
    return {
      given: () => given,
      body: (async function* () {
        given += Buffer.byteLength(start);
        yield Buffer.from(start);
        for (let i = 0; i < 1_000; i++) {
          given += chunk.length;
          yield chunk;
        }
      })(),
    };
  }
  // csv-parse's own bound (the characters in the fields) or the room's (with one per field).
  const CSV_BOUND =
    /^malformed CSV: (Max Record Size: .* 1048576 at line 2|the record after line 1 is longer than 1048576 characters)/;
  const cases: [Kind, string, string, RegExp][] = [
    ['ndjson', `${seeds.ndjson}{"kpi":"lead_time","subject":"`, 'x', /^line 3 is longer than 1048576 characters/],
    ['ndjson', seeds.ndjson, '  ', /^line 3 is longer than 1048576 characters/],
    [
      'json',
      '{"points":[{"kpi":"lead_time","subject":"',
      'x\\"',
      /^malformed JSON: a point longer than 1048576 characters \(row 1\)/,
    ],
    [
      'json',
      '{"points":[{"kpi":"lead_time"},{"dims":[',
      '[1],',
      /^malformed JSON: a point longer than 1048576 characters \(row 2\)/,
    ],
    ['csv', 'kpi,at,value,subject,region\nlead_time,2026-11-20T10:00:00Z,4,"S-', 'x,\n""', CSV_BOUND],
    ['csv', 'kpi,at,value,subject,region\n', 'abc,', CSV_BOUND],
    ['csv', 'kpi,at,value,subject,region\n', '"a","b",', CSV_BOUND],
    ['csv', 'kpi,at,value,subject,region\n', ',', CSV_BOUND],
    ['csv', 'kpi,at,value,subject,region\n', '"",', CSV_BOUND],
    ['csv', 'kpi,at,value,subject,region\n', '"a""b",', CSV_BOUND],
    ['csv', 'kpi,at,value,subject,region\nlead_time,2026-11-20T10:00:00Z,4,"', '""', CSV_BOUND],
  ];
  for (const [kind, start, filler, message] of cases)
    it(`${kind}: ${JSON.stringify(filler)} after ${JSON.stringify(start.slice(-12))} is a 400 once past the bound, the rest unread`, async () => {
      const b = endless(start, filler);
      const err = await failureOf(parseBody(kind as Exclude<Kind, 'arrow'>, b.body, dims));
      expect(err).toBeInstanceOf(Problem);
      expect((err as Problem).status).toBe(400);
      expect((err as Problem).detail).toMatch(message);
      // A point is refused within the chunk that takes it past the bound (CSV: the record counts at
      // least the text it takes), or the one after: 1 MiB and at most a few chunks of the 64 MiB.
      expect(b.given()).toBeLessThan(MAX_POINT_TEXT + 3 * 65_536);
    });
});

describe('a point of exactly the bound still parses', () => {
  const read = async (kind: 'ndjson' | 'json', body: AsyncIterable<Buffer>) => {
    const rows = [];
    try {
      for await (const batch of parseBody(kind, body, dims)) rows.push(...batch);
      return { rows };
    } catch (err) {
      if (err instanceof Problem) return { rows, problem: err };
      throw err;
    }
  };
  /** The head, the point, and its end, cut three ways. */
  const layouts: [string, (head: string, point: string, end: string) => AsyncIterable<Buffer>][] = [
    [
      'its end in a chunk of its own',
      async function* (head, point, end) {
        yield Buffer.from(head);
        yield* chunks(Buffer.from(point), 65_536);
        yield Buffer.from(end);
      },
    ],
    // 65,000 does not divide the point's length: its last chunk holds both point text and the end.
    ['its end inside its last chunk', (head, point, end) => chunks(Buffer.from(head + point + end), 65_000)],
    ['the body one chunk', (head, point, end) => chunks(Buffer.from(head + point + end), Infinity)],
  ];
  for (const extra of [0, 1])
    for (const [layout, cut] of layouts) {
      const n = MAX_POINT_TEXT + extra;
      it(`an NDJSON line and a JSON element of ${n} characters, ${layout}: ${extra ? 'refused' : 'read'}`, async () => {
        // A string of n characters: not a point (a row error), but text the parser must hold whole.
        const point = `"${'x'.repeat(n - 2)}"`;
        const nd = await read('ndjson', cut('', point, '\n'));
        const js = await read('json', cut('{"points":[', point, ']}'));
        if (extra) {
          expect(nd.problem?.detail).toMatch(/^line 1 is longer than 1048576 characters/);
          expect(js.problem?.detail).toMatch(/^malformed JSON: a point longer than 1048576 characters \(row 1\)/);
        } else {
          expect(nd.problem).toBeUndefined();
          expect(js.problem).toBeUndefined();
          expect(nd.rows.map((r) => [r.row, r.error?.field])).toEqual([[1, '(point)']]);
          expect(js.rows.map((r) => [r.row, r.error?.field])).toEqual([[1, '(point)']]);
        }
      });
    }
});

describe('chunk edges do not change what a body says', () => {
  /** The rows a body gives, or the refusal's status, field and detail (JSON's always, its bodies being valid UTF-8 here; the others' where it names a row or line). */
  async function outcome(kind: 'ndjson' | 'json' | 'csv', bytes: Buffer, size: number): Promise<unknown> {
    const rows: ParsedRow[] = [];
    try {
      for await (const batch of parseBody(kind, chunks(bytes, size), dims)) rows.push(...batch);
      return rows;
    } catch (err) {
      // A JSON head is read token by token, so its refusal says the same whole or in pieces. A CSV
      // header refused early may name less of it than one refused whole: pieces of a record,
      // which this is about, name the same line either way.
      if (err instanceof Problem)
        return {
          status: err.status,
          field: err.extra['field'],
          detail:
            kind === 'json' || /\((row|record) \d+|line \d+/.test(err.detail ?? '') ? err.detail : 'about the head',
        };
      throw err;
    }
  }
  for (const kind of ['ndjson', 'json', 'csv'] as const)
    it(`${Math.max(50, Math.round(RUNS / 10))} mutated ${kind} bodies read whole and in chunks of 1 to 7 bytes: the same rows or the same refusal`, async () => {
      const controls = { rows: 0, wrongAtRow: 0 };
      await fc.assert(
        fc.asyncProperty(
          fc.array(mutation, { minLength: 0, maxLength: 5 }),
          fc.array(fc.tuple(fc.constantFrom('\\', '\\"', '"', '\\u00e9', '[', '{', ' ', '\n'), fc.nat()), {
            maxLength: 6,
          }),
          fc.integer({ min: 1, max: 7 }),
          async (ms, inserts, size) => {
            let text = mutate(seeds[kind], ms);
            // Escapes, quotes and brackets around the chunk edges the small sizes make.
            for (const [ins, at] of inserts) {
              const i = at % (text.length + 1);
              text = text.slice(0, i) + ins + text.slice(i);
            }
            const bytes = Buffer.from(text, 'utf8');
            const whole = await outcome(kind, bytes, bytes.length + 1);
            expect(await outcome(kind, bytes, size)).toEqual(whole);
            if (Array.isArray(whole)) {
              if ((whole as ParsedRow[]).some((r) => r.candidate)) controls.rows++;
              if ((whole as ParsedRow[]).some((r) => r.error)) controls.wrongAtRow++;
            } else if (
              /\((?:row|record) (?:[2-9]|\d{2,})|line (?:[2-9]|\d{2,})/.test((whole as { detail: string }).detail)
            )
              controls.wrongAtRow++;
          },
        ),
        { numRuns: Math.max(50, Math.round(RUNS / 10)), seed: 7 },
      );
      // Controls: some bodies gave points, and some went wrong past the head (a row error, or a
      // refusal naming a row or line after the first).
      expect(controls.rows).toBeGreaterThan(0);
      expect(controls.wrongAtRow).toBeGreaterThan(0);
    });
});

describe('the JSON reader takes what JSON takes', () => {
  /**
   * Whether JSON itself reads `bytes` as the one shape the room takes: an object whose only field
   * is "points", a non-empty array (the leading BOM dropped, as the room's decoder drops it).
   */
  function jsonTakes(bytes: Buffer): boolean {
    try {
      const v: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
      const keys = Object.keys(v);
      const points = (v as { points?: unknown }).points;
      return keys.length === 1 && keys[0] === 'points' && Array.isArray(points) && points.length > 0;
    } catch {
      return false;
    }
  }
  const runs = Math.max(200, Math.round(RUNS / 5));
  it(`${runs} JSON bodies with commas, brackets and braces inserted: refused exactly when JSON does not read them as {"points": [...]}`, async () => {
    const controls = { taken: 0, refused: 0, commaBeforeClose: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(mutation, { minLength: 0, maxLength: 3 }),
        fc.array(
          fc.tuple(
            fc.constantFrom(
              ',',
              ', ',
              '[',
              ']',
              '{',
              '}',
              '[]',
              '{}',
              ':',
              ' ',
              '\n',
              'null',
              '\u00a0',
              '\uFEFF',
              '\u2028',
              '"',
            ),
            fc.nat(),
          ),
          {
            maxLength: 4,
          },
        ),
        fc.integer({ min: 1, max: 64 }),
        async (ms, inserts, size) => {
          let text = mutate(seeds.json, ms);
          for (const [ins, at] of inserts) {
            const i = at % (text.length + 1);
            text = text.slice(0, i) + ins + text.slice(i);
          }
          const bytes = Buffer.from(text, 'utf8');
          const result = await run('json', bytes, size);
          const takes = jsonTakes(bytes);
          if (/,\s*\]/.test(text)) controls.commaBeforeClose++;
          // A body of no points is refused by the lander ("the body holds no points"), not the reader.
          const refused = result.problem !== undefined || result.rows === 0;
          if (takes) {
            // JSON keeps the last of two "points" fields; the room refuses the second (or the
            // first, when it is no array), on the field "points".
            if (result.problem?.extra['field'] === 'points' && (text.match(/"points"/g) ?? []).length > 1) return;
            expect(result.problem?.detail, text).toBeUndefined();
            expect(refused, text).toBe(false);
            controls.taken++;
          } else {
            expect(refused, text).toBe(true);
            controls.refused++;
          }
        },
      ),
      { numRuns: runs, seed: 2026 },
    );
    // Controls: bodies of both kinds, and bodies with a comma before a closing bracket.
    expect(controls.taken).toBeGreaterThan(0);
    expect(controls.refused).toBeGreaterThan(0);
    expect(controls.commaBeforeClose).toBeGreaterThan(0);
  });

  const point = JSON.stringify(good);
  const heads: [string, string, { status: number; field: string } | null][] = [
    [
      'whitespace runs past a chunk between every token',
      `{${' '.repeat(300)}"points"${'\n'.repeat(200)}:\t\r\n [${point}]}`,
      null,
    ],
    ['"points" spelled with escapes', `{"\\u0070oin\\u0074s": [${point}]}`, null],
    ['a number for "points"', `{"points" : 5}`, { status: 400, field: 'points' }],
    ['no colon after "points"', `{"points" [${point}]}`, { status: 400, field: 'body' }],
    ['an empty object', '{}', { status: 400, field: 'body' }],
    ['a BOM between "points" and its colon', `{"points"\uFEFF: [${point}]}`, { status: 400, field: 'body' }],
    ['a no-break space between the colon and "["', `{"points":\u00a0[${point}]}`, { status: 400, field: 'body' }],
    ['a first field of 100 characters', `{"${'a'.repeat(100)}": 1}`, { status: 400, field: 'body' }],
    [
      '"points" given twice, the second with escapes',
      `{"points": [${point}], "\\u0070oints": []}`,
      { status: 400, field: 'points' },
    ],
  ];
  for (const [what, body, refused] of heads)
    it(`a head with ${what}: ${refused ? `${refused.status} on ${refused.field}` : 'read'}, whole and in chunks of 1 to 7 bytes`, async () => {
      expect(jsonTakes(Buffer.from(body))).toBe(refused === null);
      for (const size of [Buffer.byteLength(body) + 1, 1, 2, 3, 5, 7]) {
        const result = await run('json', Buffer.from(body), size);
        if (refused === null) {
          expect(result.problem?.detail).toBeUndefined();
          expect(result.rows).toBe(1);
        } else {
          expect(result.problem?.status).toBe(refused.status);
          expect(result.problem?.extra['field']).toBe(refused.field);
        }
      }
    });

  it('a complete first field of any length is named another top-level field, whole and in chunks; an empty points array reads no points', async () => {
    for (const n of [10, 100, 200]) {
      const body = Buffer.from(`{"${'a'.repeat(n)}": 1}`);
      // A name that does not end within 128 characters is not waited for further.
      for (const size of [body.length + 1, 3])
        expect((await run('json', body, size)).problem?.detail).toMatch(
          n < 120 ? /it has another top-level field$/ : /^the body must be a JSON object \{"points": \[\.\.\.\]\}$/,
        );
    }
    // After the array, a field is refused however much whitespace comes before its name.
    for (const gap of [1, 300, 5000]) {
      const body = Buffer.from(`{"points": [${JSON.stringify(good)}],${' '.repeat(gap)}"x": 1}`);
      for (const size of [body.length + 1, 7]) {
        const after = await run('json', body, size);
        expect(after.problem?.detail).toMatch(/only the field "points" is accepted$/);
        expect(after.problem?.extra['field']).toBe('body');
      }
    }
    const empty = await run('json', Buffer.from('{"points": []}'), 2);
    expect(empty.problem).toBeUndefined();
    expect(empty.rows).toBe(0);
  });

  for (const body of ['{"points":[{"kpi":"x"},]}', '{"points":[{"kpi":"x"} , \n]}', '{"points":[1,]}'])
    it(`a trailing comma is a 400 naming the missing row: ${JSON.stringify(body)}`, async () => {
      const result = await run('json', Buffer.from(body), 3);
      expect(result.problem?.status).toBe(400);
      expect(result.problem?.detail).toMatch(/^malformed JSON: a "," before "\]" .* \(row 2\)$/);
    });
});

describe('a key given twice', () => {
  /** A key as JSON may spell it: plain, or with a character written as a \u escape. */
  const spelled = (key: string, escape: boolean) =>
    escape && key.length > 0
      ? `"\\u${key.charCodeAt(0).toString(16).padStart(4, '0')}${JSON.stringify(key).slice(2)}`
      : JSON.stringify(key);
  // Few distinct names, so that generated objects often repeat one; quotes and backslashes in keys
  // and values put the text off the cheap count's path.
  const key = fc.constantFrom('kpi', 'at', 'value', 'subject', 'dims', 'region', 'x', 'a"b', 'c\\d', MARK);
  const scalar = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('"', '\\', '\\"', `${MARK}"`), fc.integer());
  const value = fc.oneof(
    scalar,
    fc.array(fc.tuple(key, scalar, fc.boolean()), { maxLength: 4 }),
    fc.array(scalar, { maxLength: 3 }),
  );
  const objectText = (entries: readonly (readonly [string, unknown, boolean])[], space: string): string =>
    `{${entries
      .map(([k, v, esc]) => {
        const inner = Array.isArray(v)
          ? v.every((e) => Array.isArray(e))
            ? objectText(v as [string, unknown, boolean][], space)
            : JSON.stringify(v)
          : JSON.stringify(v);
        return `${spelled(k, esc)}${space}:${space}${inner}`;
      })
      .join(`,${space}`)}}`;
  const repeats = (entries: readonly (readonly [string, unknown, boolean])[]): boolean =>
    new Set(entries.map(([k]) => k)).size < entries.length ||
    entries.some(
      ([, v]) => Array.isArray(v) && v.length > 0 && v.every((e) => Array.isArray(e)) && repeats(v as never),
    );

  it(`${Math.max(200, Math.round(RUNS / 10))} generated points, NDJSON and JSON: refused naming the field exactly when an object names a key twice`, async () => {
    let twice = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(key, value, fc.boolean()), { minLength: 1, maxLength: 6 }),
        fc.constantFrom('', ' ', '\t'),
        async (entries, space) => {
          const text = objectText(entries, space);
          const expected = repeats(entries);
          if (expected) twice++;
          for (const [kind, body] of [
            ['ndjson', `${text}\n`],
            ['json', `{"points":[${text}]}`],
          ] as const) {
            const rows: ParsedRow[] = [];
            for await (const batch of parseBody(kind, chunks(Buffer.from(body), 64), dims)) rows.push(...batch);
            expect(rows, body).toHaveLength(1);
            const refused = rows[0]!.error?.message === 'given more than once';
            expect(refused, body).toBe(expected);
            if (refused) {
              expect(['kpi', 'at', 'value', 'subject', 'dims', '(field)'], body).toContain(rows[0]!.error!.field);
              expect(JSON.stringify(rows[0]!.error), body).not.toContain(MARK);
            }
          }
        },
      ),
      { numRuns: Math.max(200, Math.round(RUNS / 10)) },
    );
    expect(twice).toBeGreaterThan(0);
  });

  it('a point nested 50,000 deep reads as one row (its dims refused later), not a stack overflow; a key twice that deep is still found', async () => {
    const head = '{"kpi":"lead_time","at":"2026-11-20T10:00:00Z","value":1,"subject":"S","dims":';
    for (const [inner, refused] of [
      ['['.repeat(50_000) + ']'.repeat(50_000), false],
      ['{"a":'.repeat(50_000) + '{"b":1,"b":2}' + '}'.repeat(50_000), true],
    ] as const) {
      const rows: ParsedRow[] = [];
      for await (const batch of parseBody('ndjson', chunks(Buffer.from(`${head}${inner}}\n`), 1 << 16), dims))
        rows.push(...batch);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.error?.field, inner.slice(0, 10)).toBe(refused ? 'dims' : undefined);
    }
  });

  it('names the field: a top-level one, or dims for a key inside it; an escaped spelling is the same key', async () => {
    const cases: [string, string][] = [
      ['{"kpi":"lead_time","at":"2026-11-20T10:00:00Z","value":1,"subject":"S","kpi":"error_rate"}', 'kpi'],
      [
        '{"kpi":"lead_time","at":"2026-11-20T10:00:00Z","value":1,"subject":"S","dims":{"region":"north","region":"south"}}',
        'dims',
      ],
      ['{"kpi":"lead_time","k\\u0070i":"error_rate","at":"2026-11-20T10:00:00Z","value":1,"subject":"S"}', 'kpi'],
      ['{"kpi":"lead_time","at":"2026-11-20T10:00:00Z","value":1,"subject":"S","note":1,"note":2}', '(field)'],
    ];
    for (const [text, field] of cases) {
      const rows: ParsedRow[] = [];
      for await (const batch of parseBody('ndjson', chunks(Buffer.from(`${text}\n`), 1 << 16), dims))
        rows.push(...batch);
      expect(rows[0]!.error, text).toEqual({ row: 1, field, message: 'given more than once' });
    }
  });
});

describe('Arrow bodies at the edges', () => {
  const table = (at: ReturnType<typeof makeVector>, subjects: string[]) =>
    new Table({
      kpi: vectorFromArray(
        subjects.map(() => 'lead_time'),
        new Utf8(),
      ),
      at,
      value: vectorFromArray(
        subjects.map(() => 4),
        new Float64(),
      ),
      subject: vectorFromArray(subjects, new Utf8()),
    });
  const rowsOf = async (bytes: Uint8Array, chunk: number) => {
    const rows: ParsedRow[] = [];
    for await (const batch of parseBody('arrow', chunks(Buffer.from(bytes), chunk), dims)) rows.push(...batch);
    return rows;
  };

  it('a timestamp past the dates a JavaScript number holds is a row error naming at, in every unit', async () => {
    const extremes = [
      9007199254740992n,
      10n ** 13n,
      10n ** 14n,
      -(2n ** 63n) + 1n,
      2n ** 63n - 1n,
      8_640_000_000_000_001n,
    ];
    for (const [unit, type] of [
      ['s', new TimestampSecond('UTC')],
      ['ms', new TimestampMillisecond('UTC')],
      ['us', new TimestampMicrosecond('UTC')],
    ] as const) {
      const fine = unit === 's' ? 1_763_632_800n : unit === 'ms' ? 1_763_632_800_000n : 1_763_632_800_000_000n;
      const at = makeVector({ type: type as TimestampSecond, data: new BigInt64Array([fine, ...extremes]) });
      const bytes = tableToIPC(
        table(
          at,
          extremes.concat([0n]).map((_, i) => `${MARK}-${i}`),
        ),
        'stream',
      );
      for (const chunk of [1 << 16, 7]) {
        const rows = await rowsOf(bytes, chunk);
        expect(rows, `${unit}, chunks of ${chunk}`).toHaveLength(extremes.length + 1);
        // The first is 2025-11-20T10:00:00Z; each extreme is refused alone, naming the column.
        expect(rows[0]!.candidate?.at, unit).toBe('2025-11-20T10:00:00.000Z');
        for (const r of rows.slice(1)) {
          const at = r.candidate?.at;
          // Either refused here, or read as a date the validator refuses (ns-like values in range).
          if (r.error) expect(r.error, unit).toMatchObject({ field: 'at' });
          else expect(typeof at === 'string' && !Number.isNaN(Date.parse(at)), unit).toBe(true);
          expect(JSON.stringify(r.error ?? {})).not.toContain(MARK);
        }
        expect(rows.filter((r) => r.error).length, unit).toBeGreaterThan(0);
      }
    }
  });

  it('a body that goes on after the stream’s end-of-stream marker is refused, whole and in chunks: nothing is read of it', async () => {
    const first = tableToIPC(table(vectorFromArray(['2025-11-20T10:00:00Z'], new Utf8()), [`${MARK}-A`]), 'stream');
    const second = tableToIPC(table(vectorFromArray(['2025-11-20T11:00:00Z'], new Utf8()), [`${MARK}-B`]), 'stream');
    for (const tail of [second, new Uint8Array([1]), new Uint8Array(1024)]) {
      const body = new Uint8Array(first.length + tail.length);
      body.set(first);
      body.set(tail, first.length);
      for (const chunk of [1 << 16, 7, first.length]) {
        const refused = await rowsOf(body, chunk).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(refused, `tail of ${tail.length}, chunks of ${chunk}`).toBeInstanceOf(Problem);
        expect((refused as Problem).status).toBe(400);
        expect((refused as Problem).body()).toMatchObject({ field: 'body' });
        expect((refused as Problem).message).toMatch(/end-of-stream marker/);
      }
    }
    // The stream alone still reads.
    expect(await rowsOf(first, 7)).toHaveLength(1);
  });
});
