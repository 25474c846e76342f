import type { TestProject } from 'vitest/node';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openControlDb } from '../../services/platform/control-db.js';
import { migrateControlDb } from '../../services/platform/migrate.js';
import { packageRoot } from '../../services/platform/paths.js';
import { createScratchDatabase } from './scratch-db.js';
import { transpileSources } from './transpile.js';

/**
 * Where the integration suites get PostgreSQL: DATABASE_URL (CI: the real server) if set,
 * else a testcontainers PostgreSQL when a Docker engine answers, else embedded PGlite.
 *
 * The control plane is migrated once per run, into a template: with a server a template
 * database (each suite's database is `CREATE DATABASE … TEMPLATE` of it), with PGlite a data
 * directory holding the migrated embedded cluster (each suite's room starts on a copy of it).
 * A fresh PGlite cluster costs an initdb of several CPU-seconds; a copy costs a file copy.
 * See freshControlDb in tests/helpers/test-room.ts.
 *
 * Spawned `parity` processes run the sources transpiled once per run (tests/helpers/transpile.ts).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env['DATABASE_URL'];
  const stops: (() => Promise<void>)[] = [];
  if (!url && (process.env['DOCKER_HOST'] || existsSync('/var/run/docker.sock'))) {
    try {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const container = await new PostgreSqlContainer('postgres:17-alpine').start();
      url = container.getConnectionUri();
      stops.push(async () => void (await container.stop()));
    } catch (err) {
      process.stderr.write(
        `testcontainers could not start PostgreSQL (${(err as Error).message.split('\n')[0]}); using PGlite\n`,
      );
    }
  }
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  try {
    let pgTemplate = '';
    let pgliteTemplateDir = '';
    let pgliteEmptyDir = '';
    if (url) {
      const tpl = await createScratchDatabase(url, 'parity_tpl');
      stops.push(tpl.drop);
      const h = await openControlDb({ databaseUrl: tpl.url });
      try {
        await migrateControlDb(h.db);
      } finally {
        await h.close();
      }
      pgTemplate = new URL(tpl.url).pathname.slice(1);
    } else {
      const tmp = (prefix: string) => {
        const dir = mkdtempSync(join(tmpdir(), prefix));
        stops.push(async () => rmSync(dir, { recursive: true, force: true }));
        return dir;
      };
      // A new cluster as it is before the first migration, then a copy of it migrated.
      pgliteEmptyDir = tmp('parity-template-empty-');
      await (await openControlDb({ dataDir: pgliteEmptyDir })).close();
      pgliteTemplateDir = tmp('parity-template-');
      cpSync(pgliteEmptyDir, pgliteTemplateDir, { recursive: true });
      const h = await openControlDb({ dataDir: pgliteTemplateDir });
      try {
        await migrateControlDb(h.db);
      } finally {
        await h.close();
      }
    }
    const js = transpileSources(packageRoot());
    stops.push(async () => js.remove());
    project.provide('parityJs', js.dir);
    project.provide('pgAdminUrl', url ?? '');
    project.provide('pgTemplate', pgTemplate);
    project.provide('pgliteTemplateDir', pgliteTemplateDir);
    project.provide('pgliteEmptyDir', pgliteEmptyDir);
  } catch (err) {
    await stop();
    throw err;
  }
  return stop;
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The PostgreSQL server's admin URL, or '' when the run uses PGlite. */
    pgAdminUrl: string;
    /** With a server: the migrated template database each suite's database is copied from. */
    pgTemplate: string;
    /** With PGlite: a data directory holding only the migrated embedded control database. */
    pgliteTemplateDir: string;
    /** With PGlite: the same before its first migration (a new cluster, no tables). */
    pgliteEmptyDir: string;
    /** A package root holding the sources transpiled to JavaScript, for spawned `parity` processes. */
    parityJs: string;
  }
}
