import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Longest first: two workers finish together when the slowest suites start first and the short
 * ones fill the gaps (a fresh clone has no duration cache to sort by). Seconds each suite took,
 * setup included, on two cores with one kept busy and no DATABASE_URL (issue #11 item 8; measured
 * 2026-11-30, 429 s in all); a suite not listed is short.
 */
const SECONDS: Record<string, number> = {
  'tests/integration/disclosure-families.test.ts': 91,
  'tests/integration/cli.test.ts': 59,
  'tests/integration/demo.test.ts': 43,
  'tests/browser/dashboard.test.ts': 41,
  'tests/integration/disclosure-property.test.ts': 39,
  'tests/integration/query-oracle-own.test.ts': 37,
  'tests/integration/crash.test.ts': 28,
  'tests/unit/parser-fuzz.test.ts': 23,
  'tests/integration/governance-cli.test.ts': 22,
  'tests/integration/ingest-arrow-hostile.test.ts': 20,
  'tests/integration/query-oracle-demo.test.ts': 20,
  'tests/integration/alerts.test.ts': 19,
  'tests/integration/ingest-overload.test.ts': 18,
  'tests/integration/governance.test.ts': 17,
  'tests/integration/ingest-bad-input.test.ts': 17,
  'tests/integration/ingest-echo.test.ts': 12,
  'tests/integration/alerts-crash.test.ts': 11,
  'tests/integration/secret-rotation.test.ts': 10,
  'tests/integration/ingest-slow-client.test.ts': 8,
  'tests/integration/review-send.test.ts': 6,
  'tests/integration/ingest.test.ts': 5,
};

const weight = (s: TestSpecification) => {
  const path = s.moduleId.replace(/\\/g, '/');
  const key = Object.keys(SECONDS).find((k) => path.endsWith(k));
  return key ? SECONDS[key]! : 0;
};

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    return [...base].sort((a, b) => weight(b) - weight(a));
  }
}
