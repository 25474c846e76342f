// The series oracle (tests/helpers/series-oracle.ts) on the demo agreement.
import { DEMO_KPIS, defineOracleSuite } from '../helpers/series-oracle.js';

defineOracleSuite('series oracle: the demo agreement (avg, p50, rate)', {
  kpis: DEMO_KPIS,
  seed: 20261123,
  crafted: ['customer_value', 'lead_time'],
});
