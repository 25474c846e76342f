import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Longest first: two workers finish together when the slowest suites start first and the short
 * ones fill the gaps (a fresh clone has no duration cache to sort by). Seconds each suite took,
 * setup included, on two cores with one kept busy and no DATABASE_URL (issue #11 item 8; measured
 * 2026-11-30, 468 s in all); a suite not listed is short.
 */
const SECONDS: Record<string, number> = {
  'tests/integration/demo.test.ts': 90,
  'tests/integration/disclosure-families.test.ts': 65,
  'tests/browser/dashboard.test.ts': 54,
  'tests/integration/disclosure-property.test.ts': 49,
  'tests/integration/query-oracle-own.test.ts': 44,
  'tests/integration/cli.test.ts': 42,
  'tests/integration/crash.test.ts': 36,
  'tests/unit/parser-fuzz.test.ts': 26,
  'tests/integration/governance-cli.test.ts': 21,
  'tests/integration/alerts.test.ts': 18,
  'tests/integration/query-oracle-demo.test.ts': 18,
  'tests/integration/governance.test.ts': 17,
  'tests/integration/ingest-overload.test.ts': 17,
  'tests/integration/ingest-arrow-hostile.test.ts': 15,
  'tests/integration/ingest-echo.test.ts': 14,
  'tests/integration/alerts-crash.test.ts': 13,
  'tests/integration/secret-rotation.test.ts': 13,
  'tests/integration/ingest-bad-input.test.ts': 12,
  'tests/integration/ingest-slow-client.test.ts': 8,
  'tests/integration/feedback.test.ts': 6,
  'tests/integration/review-send.test.ts': 6,
  'tests/integration/ingest.test.ts': 5,
  'tests/integration/retention.test.ts': 5,
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
