import type { FastifyPluginAsync } from 'fastify';
import type { Room } from '../services/platform/room.js';
import { countUnsettledMessages } from '../services/alerts/outbox-repository.js';
import { caller, requireRole } from '../services/governance/auth.js';

/**
 * Liveness, readiness (PostgreSQL and DuckDB answer) and Prometheus metrics. The metrics are the
 * operator's: the room's own work shows in them (an aggregate computed for a band evaluation, a
 * cached cell of a need-to-know KPI, a release step), and that work follows figures a partner
 * may not read — a hidden KPI's breach cost an evaluation one read more per scope in breach, which
 * a partner's own padding could move (docs/privacy.md §4). So only an `operator` token reads them
 * (Prometheus: `authorization: { credentials: <token> }`); /healthz and /readyz stay open.
 */
export const healthRoutes: FastifyPluginAsync<{ room: Room }> = async (app, { room }) => {
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const checks: Record<string, string> = {};
    await room.control.ping().then(
      () => (checks['postgres'] = 'ok'),
      () => (checks['postgres'] = 'unavailable'),
    );
    await room.duck.ping().then(
      () => (checks['duckdb'] = 'ok'),
      () => (checks['duckdb'] = 'unavailable'),
    );
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply
      .code(ready ? 200 : 503)
      .send({ status: ready ? 'ready' : 'not ready', checks, snapshot: room.duck.snapshots.latest });
  });

  app.get('/metrics', { schema: { hide: true }, config: { auth: 'required' } }, async (req, reply) => {
    requireRole(caller(req), 'operator');
    const s = room.duck.slots;
    const lines = [
      ...metric('parity_snapshot', 'gauge', 'The latest landed snapshot number.', room.duck.snapshots.latest),
      ...metric('parity_ingest_writers_busy', 'gauge', 'Batches landing now.', s.busy),
      ...metric(
        'parity_ingest_writers_waiting',
        'gauge',
        'Batches queued for a writer (their bodies read to disk, or still being read).',
        s.waiting,
      ),
      ...metric(
        'parity_ingest_writer_yields_total',
        'counter',
        'Streaming batches that gave their writer to a ready batch while their client was quiet, and landed later from disk.',
        app.lander.gaveUp,
      ),
      ...metric(
        'parity_release_failures_total',
        'counter',
        "Release steps that failed at every attempt since start: their points stay withheld until the KPI's next batch.",
        room.duck.releaseFailures,
      ),
      ...metric(
        'parity_release_retries_total',
        'counter',
        'Release step attempts that failed and were run again (the snapshot waits meanwhile).',
        room.duck.releaseRetries,
      ),
      ...metric(
        'parity_release_steps_total',
        'counter',
        'Release steps committed since start (one per settle step; snapshots that became ready together share one).',
        room.duck.releaseSteps.count,
      ),
      ...metric(
        'parity_release_seconds_total',
        'counter',
        'Seconds the committed release steps took since start, their transactions included.',
        room.duck.releaseSteps.seconds,
      ),
    ];
    const cache = app.reader.cache;
    if (cache)
      lines.push(
        ...metric('parity_aggregate_cache_hits_total', 'counter', 'Aggregates served from the cache.', cache.hits),
        ...metric(
          'parity_aggregate_cache_misses_total',
          'counter',
          'Aggregates computed (from the rollups or the points) since start.',
          cache.misses,
        ),
        ...metric(
          'parity_aggregate_cache_shared_total',
          'counter',
          'Requests that waited for the same aggregate another request was computing, instead of computing it again.',
          cache.shared,
        ),
        ...metric(
          'parity_aggregate_cache_cells',
          'gauge',
          'Aggregate cells the cache holds (bounded by an eighth of PARITY_MEMORY_LIMIT, or 128 MB, at 1.75 KB a cell).',
          cache.cells,
        ),
      );
    const gate = app.reader.gate;
    lines.push(
      ...metric(
        'parity_connections_refused_total',
        'counter',
        'Connections closed on arrival since start: past PARITY_MAX_CONNECTIONS or PARITY_MAX_CONNECTIONS_PER_ADDRESS.',
        app.connections.refused,
      ),
      ...metric(
        'parity_store_reads_running',
        'gauge',
        'Reads from the stored data (old snapshots, periods not rolled up) running now.',
        gate.running,
      ),
      ...metric(
        'parity_store_reads_waiting',
        'gauge',
        'Reads from the stored data waiting for their turn.',
        gate.waiting,
      ),
      ...metric(
        'parity_store_reads_refused_total',
        'counter',
        'Reads from the stored data refused (429) since start: their caller had too many waiting.',
        gate.refused,
      ),
    );
    const rollups = app.reader.rollups;
    if (rollups) {
      lines.push(
        ...metric(
          'parity_rollup_through',
          'gauge',
          'The snapshot through which every batch is rolled up (-1: not yet).',
          rollups.through,
        ),
        ...metric(
          'parity_rollup_current',
          'gauge',
          '1 when the rollups include the latest snapshot.',
          rollups.current ? 1 : 0,
        ),
        ...metric(
          'parity_rollup_reads_total',
          'counter',
          'Series answered from the rollups alone since start.',
          rollups.reads.rollup,
        ),
        ...metric(
          'parity_rollup_patched_reads_total',
          'counter',
          'Series answered from rollups behind the snapshot, with the periods batches moved since read from the points.',
          rollups.reads.patched,
        ),
        ...metric(
          'parity_rollup_failures_total',
          'counter',
          'Rollup catch-up runs that failed since rollups started (each is tried again while they run).',
          rollups.loop.stats.failures,
        ),
      );
    }
    const alerts = app.alerts;
    if (alerts) {
      const pending = await countUnsettledMessages(room.control.db);
      lines.push(
        ...metric(
          'parity_alert_evaluations_total',
          'counter',
          'Band evaluations run since start.',
          alerts.engine.stats.runs,
        ),
        ...metric(
          'parity_alert_evaluation_seconds',
          'gauge',
          'Duration of the last band evaluation.',
          (alerts.engine.stats.lastMs / 1000).toFixed(4),
        ),
        ...metric(
          'parity_alert_evaluation_busy',
          'gauge',
          'Whether a band evaluation is queued or running (1) or not (0).',
          alerts.engine.busy ? 1 : 0,
        ),
        ...metric('parity_notifications_pending', 'gauge', 'Notifications waiting for delivery (or a retry).', pending),
      );
    }
    const mem = process.memoryUsage();
    lines.push(
      ...metric('process_resident_memory_bytes', 'gauge', 'Resident memory of the process (all threads).', mem.rss),
      ...metric('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use on the main thread.', mem.heapUsed),
      ...metric(
        'nodejs_external_memory_bytes',
        'gauge',
        'Memory outside the V8 heap held by JS objects (buffers).',
        mem.external,
      ),
    );
    return reply.type('text/plain; version=0.0.4').send(lines.join('\n') + '\n');
  });
};

/** One metric in Prometheus' text format: its help, its type and its value. */
function metric(name: string, type: 'gauge' | 'counter', help: string, value: number | string): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`];
}
