// The series oracle (tests/helpers/series-oracle.ts) on an agreement of our own.
import { OWN_AGREEMENT, OWN_KPIS, defineOracleSuite } from '../helpers/series-oracle.js';

// This room runs without the aggregate cache (PARITY_QUERY_CACHE=off), so every read, including
// the ?snapshot=N replays, goes to DuckDB; the demo room runs with it.
defineOracleSuite('series oracle: an agreement of our own (sum, count, distinct, p90, p95, combined)', {
  kpis: OWN_KPIS,
  seed: 424242,
  agreementYaml: OWN_AGREEMENT,
  crafted: ['parcels', 'delay_p95'],
  env: { PARITY_QUERY_CACHE: 'off', PARITY_ROLLUPS: 'off' },
});
