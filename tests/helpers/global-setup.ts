import type { TestProject } from 'vitest/node';
import { existsSync } from 'node:fs';

/**
 * Where the integration suites get PostgreSQL: DATABASE_URL (CI: the real server) if set,
 * else a testcontainers PostgreSQL when a Docker engine answers, else embedded PGlite.
 * Each suite then creates its own fresh database (tests/helpers/control-db.ts).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env['DATABASE_URL'];
  let stop = async () => {};
  if (!url && (process.env['DOCKER_HOST'] || existsSync('/var/run/docker.sock'))) {
    try {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const container = await new PostgreSqlContainer('postgres:17-alpine').start();
      url = container.getConnectionUri();
      stop = async () => void (await container.stop());
    } catch (err) {
      process.stderr.write(
        `testcontainers could not start PostgreSQL (${(err as Error).message.split('\n')[0]}); using PGlite\n`,
      );
    }
  }
  project.provide('pgAdminUrl', url ?? '');
  return stop;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}
