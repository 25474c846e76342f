// The CSV reader (services/ingest/body-parsers.ts): the room finds where records end and hands
// whole records to Papa Parse. Generated bodies, cut into chunks at random byte offsets, are read
// by it and by csv-parse (strict RFC 4180, the reader the room used before; a dev dependency kept
// as this test's oracle): the same records on the same lines, the same rows refused for their
// width, and the same bodies refused as malformed. Then examples; the bound on an unfinished
// record is tested with the other parsers' in parser-fuzz.test.ts.
import { parse as csvParse } from 'csv-parse/sync';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_POINT_TEXT, parseBody, type ParsedRow } from '../../services/ingest/body-parsers.js';
import { Problem } from '../../services/platform/errors.js';
import { timeout } from '../helpers/timeouts.js';

const RUNS = Math.max(200, Math.round(Number(process.env['PARITY_PARSER_FUZZ_RUNS'] ?? 10_000) / 5));
const HEADER = ['kpi', 'at', 'value', 'subject', 'region'];
const dims = new Set(['region']);

async function* chunked(bytes: Buffer, cuts: readonly number[]): AsyncGenerator<Buffer> {
  let at = 0;
  for (const c of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)) {
    if (c > at) yield bytes.subarray(at, c);
    at = Math.max(at, c);
  }
  if (at < bytes.length) yield bytes.subarray(at);
}

async function read(body: AsyncIterable<Buffer>): Promise<{ rows: ParsedRow[]; problem?: Problem }> {
  const rows: ParsedRow[] = [];
  try {
    for await (const batch of parseBody('csv', body, dims)) rows.push(...batch);
    return { rows };
  } catch (err) {
    if (err instanceof Problem) return { rows, problem: err };
    throw err;
  }
}

/** What the room makes of a record the oracle read (body-parsers.ts csvRow): a candidate or a width error. */
function expected(record: string[], line: number): unknown {
  if (record.length !== HEADER.length) return { line, error: '(line)' };
  const [kpi, at, value, subject, region] = record as [string, string, string, string, string];
  const numeric = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(value);
  return {
    line,
    kpi: kpi || undefined,
    at: at || undefined,
    value: value.trim() === '' ? undefined : numeric ? Number(value) : value,
    subject: subject || undefined,
    region: region || undefined,
  };
}
const actual = (r: ParsedRow): unknown =>
  r.error
    ? { line: r.row, error: r.error.field }
    : {
        line: r.row,
        kpi: r.candidate?.kpi,
        at: r.candidate?.at,
        value: r.candidate?.value,
        subject: r.candidate?.subject,
        region: (r.candidate?.dims as Record<string, string> | undefined)?.['region'],
      };

/**
 * Where a quoted field holds a line break: \n, or \r in a \r body. csv-parse counts a \r\n inside
 * quotes as two lines (the room: one, as an editor shows it; checked below by example).
 */
const NL = '\u2424';

/** A field as written: plain, quoted (with commas, doubled quotes, line breaks), or malformed now and then. */
const field = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'lead_time',
      '2026-11-20T10:00:00Z',
      '4',
      '-1.5e2',
      ' 7 ',
      'north',
      'S-1',
      'Zürich ✓',
      '',
    ),
  },
  { weight: 2, arbitrary: fc.stringMatching(/^[a-z0-9 .:-]{0,6}$/) },
  {
    weight: 3,
    arbitrary: fc
      .array(fc.constantFrom('a', ',', '""', NL, ' ', 'é', '7'), { maxLength: 5 })
      .map((parts) => `"${parts.join('')}"`),
  },
  { weight: 1, arbitrary: fc.constantFrom('S"1', ' "x"', '"x" ', '"x"y', 'a""b') },
);
const record = fc.array(field, { minLength: 2, maxLength: 7 }).map((fs) => fs.join(','));
const body = fc.record({
  newline: fc.constantFrom('\n', '\r\n', '\r'),
  records: fc.array(fc.oneof({ weight: 6, arbitrary: record }, { weight: 1, arbitrary: fc.constant('') }), {
    maxLength: 12,
  }),
  finalBreak: fc.boolean(),
  openAtEnd: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  cuts: fc.array(fc.nat(), { maxLength: 8 }),
});

describe('the CSV reader against csv-parse', () => {
  it(
    `${RUNS} generated bodies in random chunks: the same records, lines, width errors and refusals`,
    async () => {
      let compared = 0;
      let refused = 0;
      await fc.assert(
        fc.asyncProperty(body, async (b) => {
          const nl = b.newline;
          let text =
            [HEADER.join(','), ...b.records].join(nl).replaceAll(NL, nl === '\r' ? '\r' : '\n') +
            (b.finalBreak ? nl : '');
          if (b.openAtEnd) text += '"open';
          let oracle: { record: string[]; info: { lines: number } }[] | undefined;
          try {
            oracle = csvParse(text, {
              relax_column_count: true,
              skip_empty_lines: true,
              info: true,
              record_delimiter: nl,
            });
          } catch {
            oracle = undefined;
          }
          const got = await read(chunked(Buffer.from(text), b.cuts));
          if (!oracle) {
            refused++;
            expect(got.problem?.status, `refused by csv-parse: ${JSON.stringify(text)}`).toBe(400);
            return;
          }
          expect(got.problem, `read by csv-parse: ${JSON.stringify(text)}`).toBeUndefined();
          compared++;
          expect(got.rows.map(actual), JSON.stringify(text)).toEqual(
            oracle.slice(1).map((r) => expected(r.record, r.info.lines)),
          );
        }),
        { numRuns: RUNS },
      );
      expect(compared).toBeGreaterThan(RUNS / 4);
      expect(refused).toBeGreaterThan(0);
    },
    timeout(120_000),
  );
});

describe('the CSV reader by example', () => {
  it('reads a record just under the limit, split across many chunks', async () => {
    const subject = 'S'.repeat(MAX_POINT_TEXT - 100);
    const text = `kpi,at,value,subject,region\nlead_time,2026-11-20T10:00:00Z,4,"${subject}",north\n`;
    const got = await read(
      chunked(
        Buffer.from(text),
        Array.from({ length: 40 }, (_, i) => i * 30_011),
      ),
    );
    expect(got.problem).toBeUndefined();
    expect(got.rows.map((r) => [r.row, (r.candidate?.subject as string).length])).toEqual([[2, subject.length]]);
  });

  it('counts a line break inside a quoted field as one line, whatever its kind', async () => {
    for (const [nl, inside] of [
      ['\n', '\r\n'],
      ['\r\n', '\r\n'],
      ['\r\n', '\n'],
      ['\r', '\r'],
    ]) {
      const text = ['kpi,at,value,subject,region', `lead_time,x,4,"S${inside}1${inside}2",north`, 'lead_time,x,5'].join(
        nl!,
      );
      const got = await read(chunked(Buffer.from(text), [30, 31, 45, 46]));
      expect(
        got.rows.map((r) => [r.row, r.candidate?.subject ?? r.error?.field]),
        JSON.stringify(text),
      ).toEqual([
        [4, `S${inside}1${inside}2`],
        [5, '(line)'],
      ]);
    }
  });

  it('names the line of a malformed quote and does not echo the field', async () => {
    const cases: [string, RegExp][] = [
      [
        'kpi,at,value,subject,region\n\nlead_time,2026-11-20T10:00:00Z,4,SECRET"1,north\n',
        /a quote inside an unquoted field on line 3/,
      ],
      ['kpi,at,value,subject,region\r\nlead_time,x,4,"a\r\nb"SECRET,north\r\n', /text after a closing quote on line 3/],
      [
        'kpi,at,value,subject,region\nlead_time,x,4,"SECRET\n',
        /a quoted field is not closed \(the record starts on line 2\)/,
      ],
    ];
    for (const [text, message] of cases) {
      for (const cuts of [[], [1, 2, 3, 5, 8, 13, 21, 34, 55]]) {
        const got = await read(chunked(Buffer.from(text), cuts));
        expect(got.problem?.status, text).toBe(400);
        expect(got.problem?.detail, text).toMatch(message);
        expect(got.problem?.detail, text).not.toContain('SECRET');
      }
    }
  });
});
