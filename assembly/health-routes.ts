import type { FastifyPluginAsync } from 'fastify';
import type { Room } from '../services/platform/room.js';
import { countUnsettledMessages } from '../services/alerts/outbox-repository.js';

/** Liveness, readiness (PostgreSQL and DuckDB answer) and Prometheus metrics. */
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

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    const s = room.duck.slots;
    const lines = [
      '# HELP parity_snapshot The latest landed snapshot number.',
      '# TYPE parity_snapshot gauge',
      `parity_snapshot ${room.duck.snapshots.latest}`,
      '# HELP parity_ingest_writers_busy Batches landing now.',
      '# TYPE parity_ingest_writers_busy gauge',
      `parity_ingest_writers_busy ${s.busy}`,
      '# HELP parity_ingest_writers_waiting Batches queued for a writer.',
      '# TYPE parity_ingest_writers_waiting gauge',
      `parity_ingest_writers_waiting ${s.waiting}`,
      "# HELP parity_release_failures_total Release steps that failed at every attempt since start: their points stay withheld until the KPI's next batch.",
      '# TYPE parity_release_failures_total counter',
      `parity_release_failures_total ${room.duck.releaseFailures}`,
      '# HELP parity_release_retries_total Release step attempts that failed and were run again (the snapshot waits meanwhile).',
      '# TYPE parity_release_retries_total counter',
      `parity_release_retries_total ${room.duck.releaseRetries}`,
    ];
    const rollups = app.reader.rollups;
    if (rollups) {
      lines.push(
        '# HELP parity_rollup_through The snapshot through which every batch is rolled up (-1: not yet).',
        '# TYPE parity_rollup_through gauge',
        `parity_rollup_through ${rollups.through}`,
        '# HELP parity_rollup_current 1 when the rollups include the latest snapshot.',
        '# TYPE parity_rollup_current gauge',
        `parity_rollup_current ${rollups.current ? 1 : 0}`,
        '# HELP parity_rollup_reads_total Series answered from the rollups alone since start.',
        '# TYPE parity_rollup_reads_total counter',
        `parity_rollup_reads_total ${rollups.reads.rollup}`,
        '# HELP parity_rollup_patched_reads_total Series answered from rollups behind the snapshot, with the periods batches moved since read from the points.',
        '# TYPE parity_rollup_patched_reads_total counter',
        `parity_rollup_patched_reads_total ${rollups.reads.patched}`,
        '# HELP parity_rollup_failures_total Rollup catch-up runs that failed since rollups started (each is tried again while they run).',
        '# TYPE parity_rollup_failures_total counter',
        `parity_rollup_failures_total ${rollups.loop.stats.failures}`,
      );
    }
    const alerts = app.alerts;
    if (alerts) {
      const pending = await countUnsettledMessages(room.control.db);
      lines.push(
        '# HELP parity_alert_evaluations_total Band evaluations run since start.',
        '# TYPE parity_alert_evaluations_total counter',
        `parity_alert_evaluations_total ${alerts.engine.stats.runs}`,
        '# HELP parity_alert_evaluation_seconds Duration of the last band evaluation.',
        '# TYPE parity_alert_evaluation_seconds gauge',
        `parity_alert_evaluation_seconds ${(alerts.engine.stats.lastMs / 1000).toFixed(4)}`,
        '# HELP parity_notifications_pending Notifications waiting for delivery (or a retry).',
        '# TYPE parity_notifications_pending gauge',
        `parity_notifications_pending ${pending}`,
      );
    }
    const mem = process.memoryUsage();
    for (const [name, help, value] of [
      ['process_resident_memory_bytes', 'Resident memory of the process (all threads).', mem.rss],
      ['nodejs_heap_used_bytes', 'V8 heap in use on the main thread.', mem.heapUsed],
      ['nodejs_external_memory_bytes', 'Memory outside the V8 heap held by JS objects (buffers).', mem.external],
    ] as const)
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
    return reply.type('text/plain; version=0.0.4').send(lines.join('\n') + '\n');
  });
};
