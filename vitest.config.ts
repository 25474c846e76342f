import { defineConfig } from 'vitest/config';
import { timeout } from './tests/helpers/timeouts.js';
import LongestFirst from './tests/helpers/sequencer.js';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Integration suites start servers and databases; two cores, so keep parallelism modest.
    pool: 'forks',
    maxWorkers: 2,
    // Sized for two cores with one kept busy (tests/helpers/timeouts.ts).
    testTimeout: timeout(60_000),
    hookTimeout: timeout(120_000),
    globalSetup: ['tests/helpers/global-setup.ts'],
    // Test clients never reuse a socket the room is about to close (tests/helpers/client-keep-alive.ts).
    setupFiles: ['tests/helpers/client-keep-alive.ts'],
    // The slowest suites first (tests/helpers/sequencer.ts): two workers finish together.
    sequence: { sequencer: LongestFirst },
    reporters: process.env['CI'] ? ['default', ['json', { outputFile: 'test-results/vitest.json' }]] : ['default'],
  },
});
