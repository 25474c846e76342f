import { stringify } from 'csv-stringify/sync';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemSchema } from '../platform/errors.js';
import { auditRequest } from '../governance/auth.js';
import type { Room } from '../platform/room.js';
import type { Agreement } from '../platform/agreement-schema.js';
import { canonicalDigest, canonicalJson } from '../platform/canonical-json.js';
import { unauthorized } from '../platform/errors.js';
import { negotiate } from '../platform/negotiate.js';
import type { SeriesReader } from './series-reader.js';
import { requestContext, judgePeriods, listBreaches, periodBand, summariseKpis } from './kpi-summary.js';
import {
  bandsResponseSchema,
  breachesResponseSchema,
  kpisResponseSchema,
  seriesContent,
  type BandsResponse,
  type BreachesResponse,
  type KpisResponse,
} from './query-schemas.js';
import { resolveRange, resolveSeries, runSeries, seriesJson, type SeriesResult } from './series-service.js';
import { localToday } from '../platform/calendar.js';
import { assertReader, canSee, findVisibleKpi } from '../governance/access-policy.js';

const ARROW = 'application/vnd.apache.arrow.stream';
const FORMATS = { json: 'application/json', csv: 'text/csv', arrow: ARROW } as const;
/** What a series is served as, in the order that breaks a tie (no Accept, or `*\/*`: JSON). */
const SERIES_TYPES = [FORMATS.json, FORMATS.csv, FORMATS.arrow];

/** The series' media type a request's Accept prefers (406 when it admits none). */
function acceptedSeriesType(accept: string | undefined): string {
  return negotiate(accept, SERIES_TYPES, 'json|csv|arrow');
}

async function sendSeries(reply: FastifyReply, r: SeriesResult, accept: string) {
  // apache-arrow loads with the first Arrow answer (dashboards ask for JSON), before any header is set.
  const arrow = accept === ARROW ? await import('apache-arrow') : undefined;
  void reply.headers({
    'x-parity-snapshot': String(r.snapshot),
    'x-parity-digest': r.digest,
    'x-parity-agreement-version': String(r.agreementVersion),
    vary: 'accept',
  });
  if (arrow) {
    const { Float64, Int32, Table, Utf8, tableToIPC, vectorFromArray } = arrow;
    // Typed columns: the schema of a series never depends on its data (an all-null column
    // would otherwise be inferred as Float64 or Null); withheld values are nulls, as in JSON.
    const table = new Table({
      period: vectorFromArray(
        r.cells.map((c) => c.period),
        new Utf8(),
      ),
      group: vectorFromArray(
        r.cells.map((c) => c.group),
        new Utf8(),
      ),
      value: vectorFromArray(
        r.cells.map((c) => c.value),
        new Float64(),
      ),
      n: vectorFromArray(
        r.cells.map((c) => c.n),
        new Int32(),
      ),
      state: vectorFromArray(
        r.cells.map((c) => c.state),
        new Utf8(),
      ),
      reason_code: vectorFromArray(
        r.cells.map((c) => c.reasonCode ?? null),
        new Utf8(),
      ),
      reason: vectorFromArray(
        r.cells.map((c) => c.reason ?? null),
        new Utf8(),
      ),
      as_of: vectorFromArray(
        r.cells.map((c) => c.asOf ?? null),
        new Int32(),
      ),
    });
    return reply.type(ARROW).send(Buffer.from(tableToIPC(table, 'stream')));
  }
  if (accept === FORMATS.csv) {
    const rows = [
      ['period', 'group', 'value', 'n', 'state', 'reason_code', 'reason', 'as_of'],
      ...r.cells.map((c) => [c.period, c.group, c.value, c.n, c.state, c.reasonCode, c.reason, c.asOf]),
    ];
    return reply.type('text/csv; charset=utf-8').send(stringify(rows));
  }
  return reply.type('application/json; charset=utf-8').send(seriesJson(r));
}

/** Sent as the canonical JSON string itself, so every partner gets the same bytes. */
function sendCanonical(reply: FastifyReply, body: unknown) {
  return reply.type('application/json; charset=utf-8').send(canonicalJson(body));
}

/** The range and snapshot a read asks for, checked against what may be read, and today: in the zone of the version in force. */
function rangeNow(room: Room, agreement: Agreement, query: Parameters<typeof resolveRange>[0]) {
  const now = room.clock.now();
  const tz = agreement.partnership.timezone;
  return { q: resolveRange(query, tz, room.duck.snapshots.latest, now, room.duck), today: localToday(now, tz) };
}

/** GET /v1/kpis/{kpi}/series: only agreed aggregates, small cells withheld. */
export const queryRoutes: FastifyPluginAsync<{ room: Room; reader: SeriesReader }> = async (
  fastify,
  { room, reader },
) => {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/kpis',
    {
      config: { auth: 'optional' },
      schema: {
        summary: 'Every KPI the caller may see: last closed period, open period, band, state, change',
        tags: ['query'],
        security: [{ bearer: [] }, {}],
        querystring: z.strictObject({ snapshot: z.string().max(12).optional() }),
        response: {
          200: kpisResponseSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const principal = req.principal;
      assertReader(principal);
      const result: KpisResponse = await room.duck.stableRead(async () => {
        const ctx = requestContext(room, reader.forRequest(req), req.query.snapshot);
        return {
          ...(await summariseKpis(ctx, principal)),
          asOf: room.duck.landedAt(ctx.snapshot)?.toISOString() ?? null,
        };
      });
      const snapshot = result.snapshot;
      if (!principal && result.kpis.length === 0) throw unauthorized();
      await auditRequest(room, req, {
        action: 'query.kpis',
        details: { role: principal?.role ?? 'public', snapshot, kpis: result.kpis.map((k) => k.id) },
      });
      void reply.headers({ 'x-parity-digest': result.digest, 'x-parity-snapshot': String(snapshot) });
      return sendCanonical(reply, result);
    },
  );

  app.get(
    '/v1/breaches',
    {
      config: { auth: 'optional' },
      schema: {
        summary: 'Closed periods outside their band, per KPI and scope, with the value where disclosed',
        tags: ['query'],
        security: [{ bearer: [] }, {}],
        querystring: z.strictObject({
          kpi: z.string().max(64).optional(),
          from: z.string().max(10).optional(),
          to: z.string().max(10).optional(),
          snapshot: z.string().max(12).optional(),
        }),
        response: {
          200: breachesResponseSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const principal = req.principal;
      assertReader(principal);
      const { active, kpis, q, breaches } = await room.duck.stableRead(async () => {
        const active = room.agreement();
        const kpis =
          req.query.kpi === undefined
            ? active.agreement.kpis.filter((k) => canSee(principal, k))
            : [findVisibleKpi(active.agreement, principal, req.query.kpi)];
        if (!principal && kpis.length === 0) throw unauthorized();
        const { q, today } = rangeNow(room, active.agreement, req.query);
        const breaches = await listBreaches(
          reader.forRequest(req),
          active.agreement,
          active.version,
          kpis,
          q.from,
          q.to,
          today,
          q.snapshot,
        );
        return { active, kpis, q, breaches };
      });
      const body: BreachesResponse = {
        snapshot: q.snapshot,
        agreementVersion: active.version,
        from: q.from,
        to: q.to,
        digest: canonicalDigest(breaches),
        breaches,
      };
      await auditRequest(room, req, {
        action: 'query.breaches',
        details: {
          role: principal?.role ?? 'public',
          kpis: kpis.map((k) => k.id),
          from: q.from,
          to: q.to,
          snapshot: q.snapshot,
          breaches: breaches.length,
        },
      });
      void reply.headers({ 'x-parity-digest': body.digest, 'x-parity-snapshot': String(q.snapshot) });
      return sendCanonical(reply, body);
    },
  );

  app.get(
    '/v1/kpis/:kpi/bands',
    {
      config: { auth: 'optional' },
      schema: {
        summary:
          "The band in force for each closed period at the KPI's evaluation grain, per scope (a control band moves period by period); no values",
        tags: ['query'],
        security: [{ bearer: [] }, {}],
        params: z.object({ kpi: z.string().max(64) }),
        querystring: z.strictObject({
          from: z.string().max(10).optional(),
          to: z.string().max(10).optional(),
          snapshot: z.string().max(12).optional(),
        }),
        response: {
          200: bandsResponseSchema,
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const principal = req.principal;
      assertReader(principal);
      const { active, kpi, q, judged } = await room.duck.stableRead(async () => {
        const active = room.agreement();
        const kpi = findVisibleKpi(active.agreement, principal, req.params.kpi);
        const { q, today } = rangeNow(room, active.agreement, req.query);
        const judged = await judgePeriods(
          reader.forRequest(req),
          active.agreement,
          active.version,
          [kpi],
          q.from,
          q.to,
          today,
          q.snapshot,
        );
        return { active, kpi, q, judged };
      });
      const bands = judged.map(periodBand);
      const body: BandsResponse = {
        kpi: kpi.id,
        grain: kpi.evaluate.grain,
        from: q.from,
        to: q.to,
        snapshot: q.snapshot,
        agreementVersion: active.version,
        digest: canonicalDigest(bands),
        bands,
      };
      await auditRequest(room, req, {
        action: 'query.bands',
        target: kpi.id,
        details: {
          role: principal?.role ?? 'public',
          from: q.from,
          to: q.to,
          snapshot: q.snapshot,
          periods: bands.length,
        },
      });
      void reply.headers({ 'x-parity-digest': body.digest, 'x-parity-snapshot': String(q.snapshot) });
      return sendCanonical(reply, body);
    },
  );

  app.get(
    '/v1/kpis/:kpi/series',
    {
      config: { auth: 'optional' },
      schema: {
        summary: 'An agreed KPI as a series of periods (JSON, CSV or Arrow by Accept)',
        tags: ['query'],
        security: [{ bearer: [] }, {}],
        params: z.object({ kpi: z.string().max(64) }),
        querystring: z.strictObject({
          grain: z.string().max(10).optional(),
          from: z.string().max(10).optional(),
          to: z.string().max(10).optional(),
          by: z.string().max(64).optional(),
          snapshot: z.string().max(12).optional(),
          format: z.enum(['json', 'csv', 'arrow']).optional().describe('overrides Accept (for download links)'),
        }),
        response: {
          200: { content: seriesContent },
          400: problemSchema,
          401: problemSchema,
          403: problemSchema,
          404: problemSchema,
          406: problemSchema,
          500: problemSchema,
        },
      },
    },
    async (req, reply) => {
      const principal = req.principal;
      assertReader(principal);
      // Decided before any figure is computed or audited.
      const type = req.query.format ? FORMATS[req.query.format] : acceptedSeriesType(req.headers.accept);
      const { kpi, q, result } = await room.duck.stableRead(async () => {
        const active = room.agreement();
        const kpi = findVisibleKpi(active.agreement, principal, req.params.kpi);
        const q = resolveSeries(
          active.agreement,
          kpi,
          req.query,
          room.duck.snapshots.latest,
          room.clock.now(),
          room.duck,
        );
        return { kpi, q, result: await runSeries(reader.forRequest(req), active.version, q) };
      });
      await auditRequest(room, req, {
        action: 'query.series',
        target: kpi.id,
        details: {
          role: principal?.role ?? 'public',
          grain: q.grain,
          from: q.from,
          to: q.to,
          by: result.by,
          snapshot: q.snapshot,
          cells: result.cells.length,
          suppressed: result.cells.filter((c) => c.state === 'suppressed').length,
        },
      });
      return sendSeries(reply, result, type);
    },
  );
};
