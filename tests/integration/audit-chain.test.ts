import { describe, expect, inject, it } from 'vitest';
import { AuditChain, appendAuditIn, verifyAuditChain } from '../../services/governance/audit-repository.js';
import { openControlDb } from '../../services/platform/control-db.js';
import { migrateControlDb } from '../../services/platform/migrate.js';
import { createScratchDatabase } from '../helpers/scratch-db.js';

describe('the audit chain under concurrent writers', () => {
  it.skipIf(!inject('pgAdminUrl'))(
    "two processes' one-statement appends and transactional appends interleave into one unbroken chain (PostgreSQL)",
    async () => {
      const scratch = await createScratchDatabase(inject('pgAdminUrl'));
      const a = await openControlDb({ databaseUrl: scratch.url });
      const b = await openControlDb({ databaseUrl: scratch.url });
      try {
        await migrateControlDb(a.db);
        // One chain writer per process (each room creates one), on its own connection pool.
        const [chainA, chainB] = [new AuditChain(a.db), new AuditChain(b.db)];
        const at = new Date('2026-11-25T12:00:00Z');
        const writes: Promise<unknown>[] = [];
        for (let i = 0; i < 40; i++) {
          writes.push(chainA.append({ actor: 'a', partnerId: null, action: 'query.series', details: { i } }, at));
          writes.push(chainB.append({ actor: 'b', partnerId: 'acme', action: 'query.series', details: { i } }, at));
          if (i % 4 === 0)
            writes.push(
              a.db
                .transaction()
                .execute((tx) =>
                  appendAuditIn(tx, { actor: 'tx', partnerId: null, action: 'token.created', details: { i } }, at),
                ),
            );
        }
        await Promise.all(writes);
        expect(await verifyAuditChain(a.db)).toEqual({ ok: true, entries: 90 });
        const seqs = (await a.db.selectFrom('audit_log').select('seq').orderBy('seq').execute()).map((r) =>
          Number(r.seq),
        );
        expect(seqs).toEqual(Array.from({ length: 90 }, (_, i) => i + 1));
      } finally {
        await a.close();
        await b.close();
        await scratch.drop();
      }
    },
  );
});
