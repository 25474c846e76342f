/**
 * Rooms of many points for the benchmarks: `bench:query` reads them, `bench:ingest` lands batches
 * into them (BENCH_PRELOAD). Points are generated straight into the room's DuckDB file with one
 * INSERT … FROM range(N), so sizes of 10^8 load in minutes.
 */
import { DuckDBInstance } from '@duckdb/node-api';

/** The demo agreement's KPIs, every one of which the generated points feed. */
export const SEEDED_KPIS = ['customer_value', 'lead_time', 'error_rate', 'compliance', 'team_satisfaction'] as const;

/**
 * N points in landing (time) order: KPIs by weight, two partners, values valid for each KPI,
 * 43-character base64url pseudonyms of about N/3 subjects, a region for the KPIs that have one.
 */
function generateSql(n: number, from: string): string {
  const span = 730 * 86_400_000_000; // µs
  const subjects = Math.max(1, Math.floor(n / 3));
  return `
INSERT INTO points (snapshot, partner, kpi, ts, value, subject, dims)
SELECT 1::UINTEGER AS snapshot,
  CASE WHEN ((h1 >> 8) & 1) = 0 THEN 'acme' ELSE 'globex' END AS partner,
  kpi,
  TIMESTAMPTZ '${from} 00:00:00+00' + to_microseconds((i::DOUBLE * ${span} / ${n})::BIGINT + ((h1 >> 20) % 60000000)::BIGINT) AS ts,
  CASE kpi
    WHEN 'lead_time' THEN 10 + (h2 % 14001) / 100.0
    WHEN 'customer_value' THEN (h2 % 11)::DOUBLE
    WHEN 'team_satisfaction' THEN (1 + h2 % 5)::DOUBLE
    ELSE CASE WHEN h2 % 1000 < 30 THEN 1.0 ELSE 0.0 END
  END AS value,
  rtrim(replace(replace(to_base64(unhex(sha256('bench-subject-' || (h3 % ${subjects})::VARCHAR))), '+', '-'), '/', '_'), '=') AS subject,
  CASE WHEN kpi IN ('lead_time', 'error_rate', 'customer_value')
    THEN CASE WHEN (h2 >> 24) % 5 < 3 THEN '{"region":"north"}' ELSE '{"region":"south"}' END
  END AS dims
FROM (
  SELECT i, h1, h2, h3,
    CASE WHEN h1 % 200 < 80 THEN 'lead_time' WHEN h1 % 200 < 160 THEN 'error_rate' WHEN h1 % 200 < 190 THEN 'customer_value'
         WHEN h1 % 200 < 195 THEN 'compliance' ELSE 'team_satisfaction' END AS kpi
  FROM (SELECT range AS i, hash(range, 1) AS h1, hash(range, 2) AS h2, hash(range, 3) AS h3 FROM range(${n}))
)`;
}

/**
 * Loads N generated points (generateSql) over the 730 days from `from` straight into a room's
 * DuckDB file (`points.duckdb` of a data directory whose room was opened and closed once), as
 * one landed batch of snapshot 1 in the demo's zone; the seconds it took.
 */
export async function seedPoints(file: string, n: number, from: string): Promise<number> {
  const db = await DuckDBInstance.create(file);
  const c = await db.connect();
  try {
    const started = performance.now();
    await c.run(generateSql(n, from));
    // As the lander does: each point's local day in the partnership's zone.
    await c.run(`UPDATE points SET local_day = timezone('Europe/Berlin', ts)::DATE`);
    await c.run(`INSERT OR REPLACE INTO room_settings VALUES ('timezone', 'Europe/Berlin')`);
    // Points the room's release steps never saw: it builds the step guard's history from them when it opens.
    await c.run(`DELETE FROM room_settings WHERE key = 'released_atoms_built'`);
    await c.run(
      `INSERT INTO batches (id, snapshot, partner, idempotency_key, body_sha256, content_type, accepted, rejected, checksum, errors, agreement_version, received_at, landed_at, kpis)
       VALUES ('bat_bench_1', 1, 'acme', NULL, repeat('0', 64), 'application/x-ndjson', ${n}, 0, repeat('0', 64), '{"errors":[],"truncated":false}', 1, now(), now(), ['${[...SEEDED_KPIS].sort().join("','")}'])`,
    );
    await c.run('CHECKPOINT');
    const s = (performance.now() - started) / 1000;
    const count = Number(
      (await c.runAndReadAll('SELECT count(*)::BIGINT AS n FROM points')).getRowObjectsJson()[0]!['n'],
    );
    if (count !== n) throw new Error(`loaded ${count} points, expected ${n}`);
    return s;
  } finally {
    c.closeSync();
    db.closeSync();
  }
}
