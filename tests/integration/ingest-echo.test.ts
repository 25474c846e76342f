// Issue #13: errors never echo the body. Generated bodies in every content type carry marker
// strings wherever a partner system could misplace a subject — the subject itself, the KPI, the
// time, the value, dimension keys and values, unknown fields, a CSV without its header row, an
// NDJSON line running into the next, broken JSON right after the marker, Arrow column names — and
// no response (status, problem, receipt) and no log line may contain a marker. Nothing may 5xx.
import { tableToIPC, Table, vectorFromArray, Utf8, Float64, type Vector } from 'apache-arrow';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mediaTypes, type BodyKind } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { runs } from '../helpers/depth.js';
import { timeout } from '../helpers/timeouts.js';

let t: TestRoom;
beforeAll(async () => {
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off' } });
});
afterAll(async () => t?.close());

const RUNS = runs('PARITY_ECHO_RUNS', 20, 60);

type Kind = BodyKind;
const TYPES = mediaTypes;

const good = { kpi: 'lead_time', at: '2026-11-20T10:00:00Z', value: 4, subject: 'S-GOOD' };

/** Where the marker goes: each is one way a body goes wrong (or right) around a subject. */
const placements = [
  'subject',
  'kpi',
  'at',
  'value',
  'dimKey',
  'dimValue',
  'unknownField',
  'unknownFieldValue',
  'topLevelKey',
  'noHeader',
  'runOn',
  'brokenAfter',
  'columnName',
  'quoteError',
] as const;
type Placement = (typeof placements)[number];

function pointWith(place: Placement, m: string): Record<string, unknown> {
  switch (place) {
    case 'subject':
      return { ...good, subject: m };
    case 'kpi':
      return { ...good, kpi: m, subject: m };
    case 'at':
      return { ...good, at: `2026-11-20T${m}`, subject: m };
    case 'value':
      return { ...good, value: m, subject: m };
    case 'dimKey':
      return { ...good, dims: { [m]: 'north' }, subject: m };
    case 'dimValue':
      return { ...good, dims: { region: m }, subject: m };
    case 'unknownField':
      return { ...good, [m]: 1 };
    default:
      return { ...good, extra: m, subject: m };
  }
}

function body(kind: Kind, place: Placement, m: string, rows: number): string | Uint8Array {
  const points: Record<string, unknown>[] = Array.from({ length: rows }, (_, i) =>
    i === rows - 1 ? pointWith(place, m) : { ...good },
  );
  if (kind === 'ndjson') {
    const lines = points.map((p) => JSON.stringify(p));
    if (place === 'runOn') return `${lines.join('\n')}${JSON.stringify({ ...good, subject: m })}\n`;
    if (place === 'brokenAfter') return `${lines.join('\n')}\n{"kpi":"lead_time","subject":"${m}" "at":1}\n`;
    return `${lines.join('\n')}\n`;
  }
  if (kind === 'json') {
    if (place === 'topLevelKey') return `{"${m}": 1, "points": []}`;
    if (place === 'brokenAfter') return `{"points": [{"subject": "${m}" ${m}}]}`;
    return JSON.stringify({ points });
  }
  if (kind === 'csv') {
    const row = (p: Record<string, unknown>) =>
      [p['kpi'], p['at'], p['value'], p['subject'], (p['dims'] as Record<string, string> | undefined)?.['region'] ?? '']
        .map(String)
        .join(',');
    const header = place === 'columnName' ? `kpi,at,value,subject,${m}` : 'kpi,at,value,subject,region';
    const data = points.map(row);
    if (place === 'noHeader') return `${data.join('\n')}\n`;
    if (place === 'quoteError') return `${header}\n${data.join('\n')}\nlead_time,2026-11-20T10:00:00Z,4,"${m}"x,\n`;
    return `${header}\n${data.join('\n')}\n`;
  }
  const col = (k: string) => points.map((p) => (p[k] === undefined ? null : String(p[k])));
  const cols: Record<string, Vector> = {
    kpi: vectorFromArray(col('kpi'), new Utf8()),
    at: vectorFromArray(col('at'), new Utf8()),
    value: vectorFromArray(
      points.map((p) => (typeof p['value'] === 'number' ? p['value'] : Number.NaN)),
      new Float64(),
    ),
    subject: vectorFromArray(col('subject'), new Utf8()),
  };
  if (place === 'columnName' || place === 'dimKey') cols[m] = vectorFromArray(col('subject'), new Utf8());
  if (place === 'dimValue')
    cols['region'] = vectorFromArray(
      points.map(() => m),
      new Utf8(),
    );
  const bytes = tableToIPC(new Table(cols), 'stream');
  // A cut-off stream: the marker sits in the bytes, the stream is incomplete.
  return place === 'brokenAfter' ? bytes.slice(0, Math.max(8, bytes.length - 40)) : bytes;
}

describe('errors never echo the body', () => {
  it(
    `${RUNS} generated bodies per content type with marker subjects: no response or log line holds a marker, no 5xx`,
    async () => {
      const token = await t.token('acme', 'ingest');
      const markers: string[] = [];
      const statuses = new Map<number, number>();
      for (const kind of Object.keys(TYPES) as Kind[]) {
        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...placements),
            fc.stringMatching(/^[A-Za-z0-9]{8}$/),
            fc.integer({ min: 1, max: 4 }),
            fc.boolean(),
            async (place, tail, rows, partial) => {
              const m = `MRK${tail}`;
              markers.push(m);
              const res = await fetch(`${t.url}/v1/points${partial ? '?partial=true' : ''}`, {
                method: 'POST',
                headers: { authorization: `Bearer ${token}`, 'content-type': TYPES[kind] },
                body: body(kind, place, m, rows) as BodyInit,
              });
              const text = await res.text();
              statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
              expect(res.status, `${kind} ${place}: ${text.slice(0, 300)}`).toBeLessThan(500);
              expect(text, `${kind} ${place}`).not.toContain(m);
              expect(text.toLowerCase(), `${kind} ${place}`).not.toContain(m.toLowerCase());
            },
          ),
          { numRuns: RUNS, seed: 1313 },
        );
      }
      // Controls: the bodies went wrong in more than one way, and some landed.
      expect(statuses.get(202) ?? 0).toBeGreaterThan(0);
      expect([...statuses.keys()].filter((s) => s >= 400).length).toBeGreaterThan(1);
      const logs = t.logs.join('');
      expect(logs).toContain('batch');
      for (const m of markers) expect(logs.includes(m), `a log line holds ${m}`).toBe(false);
    },
    timeout(240_000),
  );
});
