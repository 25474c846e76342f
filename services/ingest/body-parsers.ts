import { Readable } from 'node:stream';
import type { Table } from 'apache-arrow';
import type { CsvError, Parser as CsvParser } from 'csv-parse';
import { Problem, badRequest, type FieldError } from '../platform/errors.js';
import type { Candidate } from './point-validator.js';

/** One parsed row: its candidate fields, the names of fields outside the contract, or why it could not be read. */
export interface ParsedRow {
  row: number;
  candidate?: Candidate;
  extra?: string[];
  error?: FieldError;
}

export const ingestTypes = {
  'application/json': 'json',
  'application/x-ndjson': 'ndjson',
  'application/jsonl': 'ndjson',
  'text/csv': 'csv',
  'application/vnd.apache.arrow.stream': 'arrow',
} as const;
export type IngestKind = (typeof ingestTypes)[keyof typeof ingestTypes];

const ROWS_PER_YIELD = 2048;

/**
 * The most text of one point a parser holds while it waits for the point's end: an NDJSON line, a
 * JSON element, a CSV record (csv-parse's max_record_size counts the characters in its fields; the
 * room counts its quotes and separators too, generously). A point is some hundred characters.
 * Without a bound, a body that never ends one (a line without a break, a string left open, a
 * record of empty fields) is held whole: before the bound and the pieces below, NDJSON and JSON
 * also scanned it again with every chunk, and one 1 GB body would have kept a parse worker busy
 * for hours.
 */
export const MAX_POINT_TEXT = 1 << 20;
const pointFields = ['kpi', 'at', 'value', 'subject', 'dims'];

function candidateOf(obj: unknown, row: number, text: string): ParsedRow {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    return {
      row,
      error: {
        row,
        field: '(point)',
        message: `expected an object, got ${obj === null ? 'null' : Array.isArray(obj) ? 'an array' : typeof obj}`,
      },
    };
  }
  const o = obj as Record<string, unknown>;
  let extra: string[] | undefined;
  let strings = 0; // the parsed strings, keys included (duplicateKey)
  for (const k in o) {
    if (!pointFields.includes(k)) (extra ??= []).push(k);
    const v = o[k];
    strings += typeof v === 'string' ? 2 : typeof v === 'object' && v !== null ? 1 + stringsIn(v) : 1;
  }
  const twice = duplicateKey(text, strings);
  if (twice !== undefined) return { row, error: { row, field: twice, message: 'given more than once' } };
  return extra ? { row, candidate: o, extra } : { row, candidate: o };
}

/**
 * The field a point's JSON text names twice (`kpi`, `dims`; a field outside the contract is
 * `(field)`, not echoed), or undefined. JSON.parse keeps the last of two equal keys without a
 * word, so `{"kpi":"a","kpi":"b"}` would land as b; like a CSV header naming a column twice, it is
 * refused instead. Cheaply first: the text's `"` are two for each string it writes plus one for
 * each escaped `\"`, and it writes at least the strings the parsed value holds (keys and string
 * values), more when a key came twice. So as many quotes as twice the parsed strings means no key
 * came twice; any other count (a duplicate, or an escaped quote) is settled by a scan key by key.
 */
function duplicateKey(text: string, parsedStrings: number): string | undefined {
  let quotes = 0;
  for (let i = text.indexOf('"'); i !== -1; i = text.indexOf('"', i + 1)) quotes++;
  return quotes === 2 * parsedStrings ? undefined : scanForDuplicateKey(text);
}

/** The strings a parsed JSON value holds: every key and every string value, at any depth. */
function stringsIn(v: unknown, depth = 0): number {
  if (typeof v === 'string') return 1;
  if (v === null || typeof v !== 'object') return 0;
  // Deeper than any point: NaN sends the text to the scan, which keeps its own stack.
  if (depth > 32) return NaN;
  let n = 0;
  if (Array.isArray(v)) for (const x of v) n += stringsIn(x, depth + 1);
  else for (const k in v) n += 1 + stringsIn((v as Record<string, unknown>)[k], depth + 1);
  return n;
}

/**
 * Walks a text JSON.parse accepted and returns the first key given twice in one object, named as
 * {@link duplicateKey} says (`dims` for a key inside `dims`), or undefined.
 */
function scanForDuplicateKey(text: string): string | undefined {
  // One entry per open container: the keys seen so far (null for an array) and its own key.
  const stack: { keys: Set<string> | null; key: string | undefined }[] = [];
  let lastKey: string | undefined; // the key whose value comes next, in the innermost object
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 34) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 34) j += text.charCodeAt(j) === 92 ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const top = stack[stack.length - 1]!;
        if (top.keys!.has(key)) {
          const outer = stack.length === 1 ? key : stack[1]!.key;
          return outer !== undefined && pointFields.includes(outer) ? outer : '(field)';
        }
        top.keys!.add(key);
        lastKey = key;
        expectKey = false;
      }
      i = j;
    } else if (ch === 123) {
      stack.push({ keys: new Set(), key: lastKey });
      expectKey = true;
    } else if (ch === 91) {
      stack.push({ keys: null, key: lastKey });
    } else if (ch === 125 || ch === 93) {
      stack.pop();
    } else if (ch === 44) {
      expectKey = stack[stack.length - 1]?.keys != null;
    }
  }
  return undefined;
}

/** JSON.parse's message without the excerpt of the input V8 quotes in it (it may hold a raw subject). */
function jsonParseMessage(err: unknown): string {
  const m = (err as Error).message;
  const cut = m.search(/, (\.\.\.)?"/);
  // V8 quotes the text it stopped at ("Unexpected token 'S'"): only JSON's own punctuation stays.
  return safeText((cut === -1 ? m : m.slice(0, cut)).slice(0, 120));
}

/**
 * A parser's message with whatever it quoted of the body removed: an error may name a row, a
 * position or a field, never echo what was sent (it may be a subject). A quoted single JSON
 * punctuation character (`','`, `'}'`) is grammar, not data, and stays.
 */
export function safeText(message: string): string {
  return message
    .replace(/(['"`])(.*?)\1/g, (all, _q: string, inner: string) => (/^[,:{}[\]]$/.test(inner) ? all : '…'))
    .replace(/\s+/g, ' ')
    .trim();
}

/** Decodes UTF-8 strictly, chunk by chunk; invalid bytes are a 400 naming the offset. */
async function* decodeUtf8(body: AsyncIterable<Buffer>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let offset = 0;
  for await (const chunk of body) {
    try {
      yield decoder.decode(chunk, { stream: true });
    } catch {
      throw badRequest(`the body is not valid UTF-8 (within bytes ${offset}–${offset + chunk.length})`, 'body');
    }
    offset += chunk.length;
  }
  try {
    const tail = decoder.decode();
    if (tail) yield tail;
  } catch {
    throw badRequest('the body is not valid UTF-8 (it ends inside a character)', 'body');
  }
}

/** NDJSON: one point per line; a line that is not JSON is a row error, not a body error. */
async function* ndjsonRows(body: AsyncIterable<Buffer>): AsyncGenerator<ParsedRow[]> {
  let carry: string[] = []; // the pieces of the line under way
  let carried = 0; // their length
  let line = 0;
  const tooLong = () =>
    badRequest(`line ${line + 1} is longer than ${MAX_POINT_TEXT} characters (no point is)`, 'body');
  let out: ParsedRow[] = [];
  const handle = (text: string) => {
    line++;
    if (text.length === 0 || (text.charCodeAt(0) <= 32 && /^\s*$/.test(text))) return;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      out.push({ row: line, error: { row: line, field: '(line)', message: `invalid JSON: ${jsonParseMessage(err)}` } });
      return;
    }
    out.push(candidateOf(obj, line, text));
  };
  for await (const text of decodeUtf8(body)) {
    // Only the new text is searched for breaks, and a line's pieces are joined once it ends: a
    // line arriving in many small chunks costs its length, not its length per chunk.
    let start = 0;
    let nl: number;
    while ((nl = text.indexOf('\n', start)) !== -1) {
      if (carried + nl - start > MAX_POINT_TEXT) throw tooLong();
      const tail = text.slice(start, nl);
      handle(carry.length === 0 ? tail : carry.join('') + tail);
      carry = [];
      carried = 0;
      start = nl + 1;
    }
    if (start < text.length) {
      carry.push(start === 0 ? text : text.slice(start));
      carried += text.length - start;
      if (carried > MAX_POINT_TEXT) throw tooLong();
    }
    if (out.length >= ROWS_PER_YIELD) {
      yield out;
      out = [];
    }
  }
  if (carry.length) handle(carry.join(''));
  if (out.length) yield out;
}

/** How far a top-level field's name is looked for (and waited for) before the body is refused. */
const NAME_WINDOW = 128;

/**
 * The top-level field name at `s`'s start (callers pass NAME_WINDOW characters), quoted as it
 * came, and that name as JSON reads it (escapes resolved; undefined when it is no JSON string);
 * null when no name ends in `s`.
 */
function fieldName(s: string): { text: string; name: string | undefined } | null {
  const m = /^"(?:[^"\\]|\\.)*"/.exec(s);
  if (!m) return null;
  try {
    return { text: m[0], name: JSON.parse(m[0]) as string };
  } catch {
    return { text: m[0], name: undefined };
  }
}

/** The tokens a JSON body opens with, in order. */
const HEAD_TOKENS = ['{', '"points"', ':', '['] as const;

/**
 * `{"points": [ {...}, ... ]}` scanned element by element, so a large JSON body is parsed
 * in pieces like NDJSON; anything else at the top level is a 400.
 */
async function* jsonRows(body: AsyncIterable<Buffer>): AsyncGenerator<ParsedRow[]> {
  const shape = 'the body must be a JSON object {"points": [...]}';
  let buf = '';
  let pos = 0;
  let phase: 'head' | 'elements' | 'close' | 'done' = 'head';
  let headStep = 0; // the HEAD_TOKENS read
  let row = 0;
  let out: ParsedRow[] = [];
  let expectComma = false;
  const ws = (i: number) => {
    while (
      i < buf.length &&
      (buf.charCodeAt(i) === 32 || buf.charCodeAt(i) === 10 || buf.charCodeAt(i) === 13 || buf.charCodeAt(i) === 9)
    )
      i++;
    return i;
  };
  const malformed = (what: string) => badRequest(`malformed JSON: ${what} (row ${row + 1})`, 'body');
  const tooLong = () => malformed(`a point longer than ${MAX_POINT_TEXT} characters`);
  // The element under way: its nesting depth, whether in a string, whether the next character is
  // escaped. An element that a chunk leaves unfinished is kept in pieces (`pending`), and the scan
  // goes on in the next chunk where it stopped: an element arriving in many small chunks costs its
  // length, not its length per chunk.
  let depth = 0;
  let inStr = false;
  let escaped = false;
  let pending: string[] | undefined;
  let pendingLength = 0;
  // Scans s from i for the end of the element under way; returns its end or -1 when more text is needed.
  const elementEnd = (s: string, i: number): number => {
    for (let j = i; j < s.length; j++) {
      const ch = s.charCodeAt(j);
      if (inStr) {
        if (escaped) escaped = false;
        else if (ch === 92) escaped = true;
        else if (ch === 34) inStr = false;
        continue;
      }
      if (ch === 34) inStr = true;
      else if (ch === 123 || ch === 91) depth++;
      else if (ch === 125 || ch === 93) {
        if (depth === 0) return j;
        depth--;
        if (depth === 0) return j + 1;
      } else if (depth === 0 && (ch === 44 || ch === 10 || ch === 13 || ch === 32 || ch === 9)) return j;
    }
    return -1;
  };
  const element = (text: string) => {
    row++;
    expectComma = true;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      throw malformed(jsonParseMessage(err));
    }
    out.push(candidateOf(obj, row, text));
  };
  for await (const text of decodeUtf8(body)) {
    if (pending) {
      const end = elementEnd(text, 0);
      if (end === -1) {
        pending.push(text);
        pendingLength += text.length;
        if (pendingLength > MAX_POINT_TEXT) throw tooLong();
        continue;
      }
      if (pendingLength + end > MAX_POINT_TEXT) throw tooLong();
      pending.push(text.slice(0, end));
      element(pending.join(''));
      pending = undefined;
      buf = text;
      pos = end;
    } else {
      // What is left of buf is short: part of the head, of the text after the array, or nothing.
      buf = pos > 0 ? buf.slice(pos) + text : buf + text;
      pos = 0;
    }
    while (true) {
      pos = ws(pos);
      if (pos >= buf.length) break;
      if (phase === 'head') {
        // The head's four tokens one at a time, JSON's whitespace between them skipped above
        // (however long it runs, and whichever chunk it ends in); a token cut by the chunk's end
        // waits for the next.
        const want = HEAD_TOKENS[headStep]!;
        if (buf.startsWith(want, pos)) {
          pos += want.length;
          if (++headStep === HEAD_TOKENS.length) phase = 'elements';
          continue;
        }
        if (buf.length - pos < want.length && want.startsWith(buf.slice(pos))) break;
        if (headStep === 0) throw badRequest(`${shape}; it does not start with "{"`, 'body');
        if (headStep === 1) {
          const key = fieldName(buf.slice(pos, pos + NAME_WINDOW));
          if (key?.name === 'points') {
            pos += key.text.length; // "points" spelled with escapes is "points" to JSON
            headStep++;
            continue;
          }
          if (!key && buf[pos] === '"' && buf.length - pos < NAME_WINDOW) break; // the name may end in the next chunk
          // A field's name is never repeated: it came with the body.
          throw badRequest(key ? `${shape}; it has another top-level field` : shape, 'body');
        }
        if (headStep === 2) throw malformed('expected ":" after "points"');
        // A value other than an array is the field's fault; anything else is not JSON there.
        if (/^[{"tfn0-9-]/.test(buf[pos]!)) throw badRequest(`${shape}; "points" must be an array`, 'points');
        throw malformed('expected "[" after "points":');
      }
      if (phase === 'elements') {
        const ch = buf[pos];
        if (ch === ']') {
          // JSON has no trailing comma: `[{...},]` is not an array of one point.
          if (row > 0 && !expectComma) throw malformed('a "," before "]" (JSON allows no trailing comma)');
          pos++;
          phase = 'close';
          continue;
        }
        if (expectComma) {
          if (ch !== ',') throw malformed(`expected "," or "]" after a point`);
          pos++;
          expectComma = false;
          continue;
        }
        // The scan state is clean here: an element ends at depth 0, outside any string.
        const end = elementEnd(buf, pos);
        if (end === -1) {
          pending = [buf.slice(pos)];
          pendingLength = buf.length - pos;
          pos = buf.length;
          if (pendingLength > MAX_POINT_TEXT) throw tooLong();
          break;
        }
        if (end - pos > MAX_POINT_TEXT) throw tooLong();
        element(buf.slice(pos, end));
        pos = end;
        continue;
      }
      if (phase === 'close') {
        if (buf[pos] === '}') {
          pos++;
          phase = 'done';
          continue;
        }
        if (buf[pos] === ',') {
          // Name the extra field as the head does; wait for its name if the chunk ends first.
          // Whitespace counts within the window: any field here is refused, so none is waited for long.
          const at = ws(pos + 1);
          const key = fieldName(buf.slice(at, at + NAME_WINDOW));
          if (!key && buf.length - pos < NAME_WINDOW) break;
          const twice = key?.name === 'points';
          throw badRequest(
            twice ? `${shape}; "points" is given twice` : `${shape}; only the field "points" is accepted`,
            twice ? 'points' : 'body',
          );
        }
        throw malformed('unexpected text after the points array');
      }
      throw badRequest(`${shape}; unexpected text after the closing brace`, 'body');
    }
    if (out.length >= ROWS_PER_YIELD) {
      yield out;
      out = [];
    }
  }
  if (phase === 'close' && buf.slice(pos).trimStart().startsWith(','))
    throw badRequest(`${shape}; only the field "points" is accepted`, 'body');
  if (phase !== 'done')
    throw malformed(
      phase === 'head'
        ? headStep === 0
          ? 'the body is empty'
          : 'the body ends before the points array'
        : 'the body ends before the points array is closed',
    );
  if (out.length) yield out;
}

/**
 * csv-parse's stream, each record tagged with the line it ends on. The parser pushes every record
 * synchronously while it parses, so its live `info.lines` is that record's line then. (Its `info`
 * option snapshots every counter into two new objects per record: half of the CSV path's parsing
 * time, measured at 1.7 µs of 3.3 µs a record.)
 */
async function linedCsv(): Promise<{ LinedCsvParser: typeof CsvParser; CsvError: typeof CsvError }> {
  // csv-parse loads with the first CSV body (each parse worker loads what its bodies need).
  const { Parser, CsvError } = await import('csv-parse');
  class LinedCsvParser extends Parser {
    /** The line the last record ended on (0 before the first). */
    #lastLine = 0;
    override push(record: unknown, encoding?: BufferEncoding): boolean {
      if (record !== null) this.#lastLine = this.info.lines;
      return super.push(record === null ? null : { record, line: this.info.lines }, encoding);
    }
    // max_record_size counts the characters inside a record's fields (a doubled quote as one): a
    // record of empty fields (`,,,,…`, `"","",…`) would grow without bound. Checked after each chunk
    // (one chunk adds at most its length), the record under way counts two for each character of
    // its fields, the one being read included, and three for each field: at least the text it
    // takes, quotes and separators included.
    override _transform(chunk: Buffer, encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
      super._transform(chunk, encoding, (err?: Error | null) => {
        const { record, record_length, field } = recordState(this);
        if (!err && 3 * record.length + 2 * (record_length + field.length) > MAX_POINT_TEXT)
          err = badRequest(
            `malformed CSV: the record after line ${this.#lastLine} is longer than ${MAX_POINT_TEXT} characters, counting its quotes and separators`,
            'body',
          );
        callback(err);
      });
    }
  }
  // The record under way is csv-parse's internal state: a version that changes its shape fails
  // every CSV body loudly (this promise is kept), rather than leave records of empty fields unbounded.
  const probe = recordState(new LinedCsvParser({}));
  if (
    !Array.isArray(probe.record) ||
    typeof probe.record_length !== 'number' ||
    typeof probe.field?.length !== 'number'
  )
    throw new Error(
      "csv-parse's state no longer holds record, record_length and field: the CSV record bound needs updating",
    );
  return { LinedCsvParser, CsvError };
}
let csvModule: ReturnType<typeof linedCsv> | undefined;

/** csv-parse's record under way: its fields so far, the characters in them, and the field being read. */
function recordState(parser: object): { record: unknown[]; record_length: number; field: { length: number } } {
  return (parser as { state: { record: unknown[]; record_length: number; field: { length: number } } }).state;
}

/** CSV: a header naming kpi, at, value, subject and one column per dimension key. */
async function* csvRows(body: AsyncIterable<Buffer>, dimensionKeys: ReadonlySet<string>): AsyncGenerator<ParsedRow[]> {
  const { LinedCsvParser, CsvError } = await (csvModule ??= linedCsv());
  const parser = new LinedCsvParser({
    bom: true,
    relax_column_count: true,
    skip_empty_lines: true,
    max_record_size: MAX_POINT_TEXT,
  });
  const source = Readable.from(decodeUtf8(body));
  source.on('error', (err) => parser.destroy(err));
  source.pipe(parser);
  let header: string[] | undefined;
  let out: ParsedRow[] = [];
  try {
    for await (const { record, line } of parser as AsyncIterable<{ record: string[]; line: number }>) {
      if (!header) {
        header = record.map((h) => h.trim());
        const errors: FieldError[] = columnErrors(header, dimensionKeys).map((e) => ({ row: line, ...e }));
        if (errors.length) throw columnsProblem('the CSV header', errors);
        continue;
      }
      if (record.length !== header.length) {
        out.push({
          row: line,
          error: { row: line, field: '(line)', message: `expected ${header.length} columns, got ${record.length}` },
        });
        continue;
      }
      const c: Candidate = {};
      let dims: Record<string, string> | undefined;
      for (let i = 0; i < header.length; i++) {
        const h = header[i]!;
        const v = record[i]!;
        if (h === 'value')
          c.value =
            v.trim() === '' ? undefined : /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(v) ? Number(v) : v;
        else if (h === 'kpi' || h === 'at' || h === 'subject') c[h] = v === '' ? undefined : v;
        else if (v !== '') (dims ??= {})[h] = v;
      }
      if (dims) c.dims = dims;
      out.push({ row: line, candidate: c });
      if (out.length >= ROWS_PER_YIELD) {
        yield out;
        out = [];
      }
    }
  } catch (err) {
    if (err instanceof CsvError)
      throw badRequest(`malformed CSV: ${safeText(err.message.replace(/,? value is .*$/s, '')).slice(0, 160)}`, 'body');
    throw err;
  }
  if (!header) throw badRequest('the body is empty: a CSV needs a header line and points', 'body');
  if (out.length) yield out;
}

/** The column problems a refusal lists, as the row errors: a header of thousands of columns gets a short answer. */
const MAX_COLUMN_ERRORS = 100;

/** The 422 for columns that are not the agreed ones: the first few named in its detail, the first 100 listed. */
function columnsProblem(what: string, errors: FieldError[]): Problem {
  const named = errors
    .slice(0, 5)
    .map((e) => `${e.field}: ${e.message}`)
    .join('; ');
  const more = errors.length > 5 ? `; and ${errors.length - 5} more` : '';
  return new Problem(422, 'Unprocessable Content', `${what} is not the agreed one: ${named}${more}`, {
    field: errors[0]!.field,
    errors: errors.slice(0, MAX_COLUMN_ERRORS),
    ...(errors.length > MAX_COLUMN_ERRORS ? { errorsTruncated: true } : {}),
  });
}

/**
 * What is wrong with a CSV header or an Arrow schema. A column the room knows is named; any other
 * by its position only (`column 3`): its name came with the body — a CSV without a header row
 * would otherwise echo its first points, subjects included.
 */
function columnErrors(names: readonly string[], dimensionKeys: ReadonlySet<string>): FieldError[] {
  const known = (h: string) => CORE_COLUMNS.includes(h) || dimensionKeys.has(h) || h === 'partner';
  const name = (h: string, i: number) => (known(h) ? h : `column ${i + 1}`);
  const errors: FieldError[] = CORE_COLUMNS.filter((c) => !names.includes(c)).map((c) => ({
    field: c,
    message: 'missing column',
  }));
  names.forEach((h, i) => {
    if (h === 'partner')
      errors.push({ field: h, message: 'not accepted: the partner is the one the token belongs to' });
    else if (!known(h))
      errors.push({
        field: name(h, i),
        message: 'unknown column (not kpi, at, value, subject or an agreed dimension; is the header row missing?)',
      });
    else if (names.indexOf(h) !== i) errors.push({ field: name(h, i), message: 'duplicate column' });
  });
  return errors;
}

const CORE_COLUMNS: readonly string[] = ['kpi', 'at', 'value', 'subject'];

/** Arrow IPC stream: columns kpi, at (timestamp with zone or ISO string), value, subject, dimensions. */
async function* arrowRows(
  body: AsyncIterable<Buffer>,
  dimensionKeys: ReadonlySet<string>,
): AsyncGenerator<ParsedRow[]> {
  // apache-arrow loads with the first Arrow body, not in every parse worker.
  const [{ RecordBatchReader }, { checkedArrowFraming }] = await Promise.all([
    import('apache-arrow'),
    import('./arrow-framing.js'),
  ]);
  // The reader ends quietly when a stream is cut at a message boundary; only the end-of-stream
  // marker (0xFFFFFFFF, 0) after the last message tells a whole stream from a truncated one
  // (an Arrow file, which starts with ARROW1, ends with ARROW1 instead).
  let head: Buffer = Buffer.alloc(0);
  let tail: Buffer = Buffer.alloc(0);
  async function* tracked(): AsyncGenerator<Buffer> {
    // Declared lengths are checked as the bytes pass, before the reader allocates for them.
    for await (const c of checkedArrowFraming(body)) {
      if (head.length < 6) head = Buffer.concat([head, c.subarray(0, 6)]).subarray(0, 6);
      tail = c.length >= 8 ? c.subarray(c.length - 8) : Buffer.concat([tail, c]).subarray(-8);
      yield c;
    }
  }
  const ended = () =>
    head.toString('latin1') === 'ARROW1'
      ? tail.subarray(2).toString('latin1') === 'ARROW1'
      : tail.length === 8 && tail.readUInt32LE(0) === 0xffffffff && tail.readUInt32LE(4) === 0;
  let reader;
  try {
    reader = await RecordBatchReader.from(tracked());
    await reader.open();
  } catch (err) {
    if (err instanceof Problem) throw err;
    throw badRequest(`not an Arrow IPC stream: ${safeText((err as Error).message).slice(0, 120)}`, 'body');
  }
  let row = 0;
  let checked = false;
  const iterator = reader[Symbol.asyncIterator]();
  while (true) {
    let next;
    try {
      next = await iterator.next();
    } catch (err) {
      if (err instanceof Problem) throw err;
      throw badRequest(
        `corrupt Arrow stream after row ${row}: ${safeText((err as Error).message).slice(0, 120)}`,
        'body',
      );
    }
    if (next.done) break;
    const batch = next.value as unknown as Table;
    const names = batch.schema.fields.map((f) => f.name);
    if (!checked) {
      checked = true;
      const errors: FieldError[] = columnErrors(names, dimensionKeys);
      const at = batch.schema.fields.find((f) => f.name === 'at');
      const atType = at ? String(at.type) : '';
      if (at && /^Timestamp/.test(atType) && !(at.type as { timezone?: string | null }).timezone)
        errors.push({
          field: 'at',
          message: 'a timestamp column needs a time zone (or send ISO-8601 strings with an offset)',
        });
      if (errors.length) throw columnsProblem('the Arrow schema', errors);
    }
    // Dictionary columns unmemoized: the reader caches every decoded dictionary value for good,
    // and a dictionary of a million distinct subjects (as JS Arrow writers encode strings) would
    // not fit the worker; each value is decoded as its row goes out instead.
    const cols = names.map((n) => [n, batch.getChild(n)!.unmemoize()] as const);
    const atField = batch.schema.fields.find((f) => f.name === 'at')!;
    const atIsTimestamp = /^Timestamp/.test(String(atField.type));
    // Rows go out in slices, however large the record batch: pyarrow, polars and DuckDB write
    // batches of 100k rows and more, and a whole batch as row objects would not fit the worker.
    for (let start = 0; start < batch.numRows; start += ROWS_PER_YIELD) {
      const end = Math.min(batch.numRows, start + ROWS_PER_YIELD);
      const out: ParsedRow[] = new Array(end - start);
      for (let i = start; i < end; i++) {
        row++;
        const c: Candidate = {};
        let dims: Record<string, string> | undefined;
        let atOutOfRange = false;
        for (const [name, vec] of cols) {
          let v: unknown;
          try {
            v = vec.get(i);
          } catch (err) {
            // A timestamp past what a JavaScript number holds exactly (the reader converts to ms).
            if (name === 'at' && atIsTimestamp) {
              atOutOfRange = true;
              continue;
            }
            throw err;
          }
          if (v === null || v === undefined) continue;
          if (typeof v === 'bigint') v = Number(v);
          if (name === 'at') {
            if (atIsTimestamp && typeof v === 'number') {
              const d = new Date(v);
              if (Number.isNaN(d.getTime())) atOutOfRange = true;
              else c.at = d.toISOString();
            } else c.at = v;
          } else if (name === 'kpi' || name === 'value' || name === 'subject') c[name] = v;
          else (dims ??= {})[name] = v as string;
        }
        if (dims) c.dims = dims;
        out[i - start] = atOutOfRange
          ? { row, error: { row, field: 'at', message: 'a timestamp outside the dates the room reads (2000 to now)' } }
          : { row, candidate: c };
      }
      yield out;
    }
  }
  if (!ended()) {
    throw badRequest(
      tail.length === 0
        ? 'the body is empty'
        : `the Arrow stream ends without its end-of-stream marker (cut short after row ${row}?)`,
      'body',
    );
  }
}

/** Parses a body of the given kind into rows, in chunks, without holding the whole body. */
export function parseBody(
  kind: IngestKind,
  body: AsyncIterable<Buffer>,
  dimensionKeys: ReadonlySet<string>,
): AsyncGenerator<ParsedRow[]> {
  switch (kind) {
    case 'json':
      return jsonRows(body);
    case 'ndjson':
      return ndjsonRows(body);
    case 'csv':
      return csvRows(body, dimensionKeys);
    case 'arrow':
      return arrowRows(body, dimensionKeys);
  }
}
