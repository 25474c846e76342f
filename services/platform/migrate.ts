import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Migrator, sql, type Migration, type MigrationProvider } from 'kysely';
import type { ControlDb } from './control-db.js';
import { sqlDir } from './paths.js';

/** Ordered, immutable .sql files under sql/control, each one migration. */
class SqlFileMigrationProvider implements MigrationProvider {
  constructor(private readonly dir: string) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    const out: Record<string, Migration> = {};
    for (const file of readdirSync(this.dir)
      .filter((f) => f.endsWith('.sql'))
      .sort()) {
      const text = readFileSync(join(this.dir, file), 'utf8');
      out[file.replace(/\.sql$/, '')] = { up: async (db) => void (await sql.raw(text).execute(db)) };
    }
    return out;
  }
}

/** Applies pending control-plane migrations; returns the names applied now. */
export async function migrateControlDb(db: ControlDb): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new SqlFileMigrationProvider(join(sqlDir(), 'control')) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(
      `migration ${failed?.migrationName ?? '?'} failed: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
