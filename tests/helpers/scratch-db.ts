import { randomBytes } from 'node:crypto';
import pg from 'pg';

async function adminQuery(adminUrl: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** 55006: the database (to drop, or to copy as a template) still has sessions; they are closing. */
async function whileInUse(run: () => Promise<void>, tries = 50): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    try {
      await run();
      return true;
    } catch (err) {
      if ((err as { code?: string }).code !== '55006') throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

/**
 * Creates a database on the server behind `adminUrl`, empty or as a copy of `template` (a
 * database nobody is connected to); `drop` removes it again.
 */
export async function createScratchDatabase(
  adminUrl: string,
  prefix = 'parity_t',
  template?: string,
): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const create = `CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`;
  if (!(await whileInUse(() => adminQuery(adminUrl, create)))) throw new Error(`${create}: the template stayed in use`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  // Wait for the suite's own connections to finish closing: FORCE would kill them mid-close
  // and their 'error' events would surface as unhandled errors in the run.
  const drop = async () => {
    if (!(await whileInUse(() => adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name}`))))
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  };
  return { url: u.toString(), drop };
}

/** Whether a PostgreSQL server answers at `url` within three seconds (benchmarks then add its rows). */
export async function postgresAnswers(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}
