import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Creates an empty database on the server behind `adminUrl`; `drop` removes it again. */
export async function createScratchDatabase(
  adminUrl: string,
  prefix = 'parity_t',
): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  // Wait for the suite's own connections to finish closing: FORCE would kill them mid-close
  // and their 'error' events would surface as unhandled errors in the run.
  const drop = async () => {
    for (let i = 0; i < 50; i++) {
      try {
        return await admin(`DROP DATABASE IF EXISTS ${name}`);
      } catch (err) {
        if ((err as { code?: string }).code !== '55006') throw err; // object in use
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  };
  return { url: u.toString(), drop };
}
