import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  bandsResponseSchema,
  breachesResponseSchema,
  kpisResponseSchema,
  seriesSchema,
} from '../../services/query/query-schemas.js';
import { leadTimePoints, ndjson, type TestPoint } from '../helpers/points.js';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

type JsonSchema = Record<string, unknown> & {
  $ref?: string;
  type?: string;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
};
interface Operation {
  security?: unknown[];
  requestBody?: unknown;
  responses: Record<string, { content?: Record<string, { schema?: JsonSchema }> }>;
}

let t: TestRoom;
let doc: {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, JsonSchema> };
};
const operations: { name: string; op: Operation }[] = [];

beforeAll(async () => {
  t = await startTestRoom();
  doc = await (await fetch(`${t.url}/openapi.json`)).json();
  for (const [path, methods] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(methods))
      operations.push({ name: `${method.toUpperCase()} ${path}`, op });
});
afterAll(async () => t?.close());

/**
 * Why a schema does not describe its fields, at each place it fails: every node has a type (or
 * is a $ref or a composition of typed nodes), every object names its properties or types its
 * values, every array types its items.
 */
function untyped(schema: JsonSchema | undefined, at: string, seen = new Set<string>()): string[] {
  if (!schema || Object.keys(schema).length === 0) return [`${at}: no schema`];
  if (schema.$ref) {
    if (seen.has(schema.$ref)) return [];
    const target = doc.components?.schemas?.[schema.$ref.replace('#/components/schemas/', '')];
    return target ? untyped(target, schema.$ref, new Set([...seen, schema.$ref])) : [`${at}: dangling ${schema.$ref}`];
  }
  const parts = schema.anyOf ?? schema.oneOf ?? schema.allOf;
  if (parts) return parts.flatMap((p, i) => untyped(p, `${at}|${i}`, seen));
  if (typeof schema.type !== 'string') return [`${at}: no type`];
  if (schema.type === 'array') return untyped(schema.items, `${at}[]`, seen);
  if (schema.type !== 'object') return [];
  const props = Object.entries(schema.properties ?? {});
  const extra = schema.additionalProperties;
  const extraTyped = typeof extra === 'object' && Object.keys(extra).length > 0;
  if (props.length === 0 && !extraTyped) return [`${at}: an opaque object (no properties, untyped values)`];
  return [
    ...props.flatMap(([k, v]) => untyped(v, `${at}.${k}`, seen)),
    ...(extraTyped ? untyped(extra, `${at}.*`, seen) : []),
  ];
}

describe('/openapi.json describes every response', () => {
  it('documents the routes', () => {
    expect(operations.length).toBeGreaterThanOrEqual(29);
    expect(operations.map((o) => o.name)).toEqual(
      expect.arrayContaining(['GET /v1/kpis', 'GET /v1/kpis/{kpi}/series', 'GET /v1/audit', 'POST /v1/points']),
    );
  });

  it('every response of every route has a schema whose every field is typed', () => {
    const problems: string[] = [];
    for (const { name, op } of operations) {
      const codes = Object.keys(op.responses);
      if (!codes.some((c) => /^2\d\d$/.test(c))) problems.push(`${name}: no success response`);
      for (const [code, res] of Object.entries(op.responses)) {
        const content = Object.entries(res.content ?? {});
        if (content.length === 0) problems.push(`${name} ${code}: no content schema`);
        for (const [type, { schema }] of content) problems.push(...untyped(schema, `${name} ${code} ${type}`));
      }
    }
    expect(problems).toEqual([]);
  });

  it('every route documents the problems it can answer: 500 always, 401 with a token, 400/413/415 with a body', () => {
    const missing: string[] = [];
    for (const { name, op } of operations) {
      const want = ['500'];
      if (op.security?.length) want.push('401');
      if (op.requestBody) want.push('400', '413', '415');
      for (const code of want) if (!op.responses[code]) missing.push(`${name} ${code}`);
      for (const [code, res] of Object.entries(op.responses))
        if (/^[45]/.test(code) && !res.content?.['application/json']?.schema?.properties?.['title'])
          missing.push(`${name} ${code}: not a problem document`);
    }
    expect(missing).toEqual([]);
  });

  it('the free-form values (audit details, agreement changes) refer to the JsonValue component', () => {
    expect(doc.components?.schemas?.['JsonValue']).toBeDefined();
    const entry = doc.paths['/v1/audit']!['get']!.responses['200']!.content!['application/json']!.schema!;
    const details = entry.properties!['entries']!.items!.properties!['details']!;
    expect(details.additionalProperties).toEqual({ $ref: '#/components/schemas/JsonValue' });
  });
});

describe('routes that send canonical JSON strings match their schemas exactly', () => {
  // Lead time (band upper 72, weekly) breached in the week of 26 October; values in November.
  const breach: TestPoint[] = Array.from({ length: 8 }, (_, i) => ({
    kpi: 'lead_time',
    at: `2026-10-27T0${i}:00:00Z`,
    value: 100 + i,
    subject: `BR-${i}`,
  }));

  beforeAll(async () => {
    for (const partner of ['acme', 'globex']) {
      const res = await fetch(`${t.url}/v1/points`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await t.token(partner, 'ingest')}`,
          'content-type': 'application/x-ndjson',
        },
        body: ndjson([...leadTimePoints(300, partner.toUpperCase()), ...breach]),
      });
      expect(res.status).toBe(202);
    }
  });

  // The serializer is bypassed for these strings: nothing would notice a field the schema
  // lacks (it would be stripped from a parsed copy) or a field of another type (parse throws).
  const cases: [string, z.ZodType][] = [
    ['/v1/kpis', kpisResponseSchema],
    ['/v1/breaches?from=2026-09-01', breachesResponseSchema],
    ['/v1/kpis/lead_time/bands?from=2026-09-01', bandsResponseSchema],
    ['/v1/kpis/lead_time/series?grain=week&by=partner&from=2026-09-01', seriesSchema],
    ['/v1/kpis/lead_time/series?grain=day&by=region&from=2026-09-01', seriesSchema],
  ];
  it.each(cases)('%s', async (path, schema) => {
    const res = await fetch(`${t.url}${path}`, {
      headers: { authorization: `Bearer ${await t.token('acme', 'analyst')}` },
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(schema.parse(body)).toStrictEqual(body);
    if (path.startsWith('/v1/breaches')) expect(body.breaches.length).toBeGreaterThan(0);
    if (path.includes('by=region'))
      expect(new Set(body.cells.map((c: { state: string }) => c.state))).toEqual(new Set(['ok', 'suppressed']));
  });
});
