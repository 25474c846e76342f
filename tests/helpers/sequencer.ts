import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Longest first: two workers finish together when the slowest suites start first and the short
 * ones fill the gaps (a fresh clone has no duration cache to sort by). Seconds each suite took,
 * setup included, on two cores with one kept busy and no DATABASE_URL (issue #11 item 8); a suite
 * not listed is short.
 */
const SECONDS: Record<string, number> = {
  'tests/browser/dashboard.test.ts': 220,
  'tests/integration/disclosure-families.test.ts': 135,
  'tests/integration/demo.test.ts': 100,
  'tests/integration/cli.test.ts': 95,
  'tests/integration/query-oracle-own.test.ts': 95,
  'tests/integration/disclosure-property.test.ts': 80,
  'tests/integration/alerts.test.ts': 75,
  'tests/integration/crash.test.ts': 55,
  'tests/integration/ingest-arrow-hostile.test.ts': 45,
  'tests/integration/governance-cli.test.ts': 40,
  'tests/integration/ingest-bad-input.test.ts': 38,
  'tests/integration/ingest-overload.test.ts': 35,
  'tests/integration/query-oracle-demo.test.ts': 30,
  'tests/unit/parser-fuzz.test.ts': 30,
  'tests/integration/governance.test.ts': 28,
  'tests/integration/secret-rotation.test.ts': 25,
  'tests/integration/ingest-echo.test.ts': 22,
  'tests/integration/alerts-crash.test.ts': 20,
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
