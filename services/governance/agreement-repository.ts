import { jsonColumn, type ControlDb } from '../platform/control-db.js';
import {
  agreementDigest,
  validateAgreement,
  type Agreement,
  type AgreementVersion,
} from '../platform/agreement-schema.js';

/** The active agreement: the highest activated version. */
export async function findActiveAgreement(db: ControlDb): Promise<AgreementVersion | undefined> {
  const row = await db
    .selectFrom('agreement_versions')
    .selectAll()
    .where('activated_at', 'is not', null)
    .orderBy('version', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!row) return undefined;
  const doc = jsonColumn<unknown>(row.document);
  const parsed = validateAgreement(doc);
  if (!parsed.ok)
    throw new Error(
      `stored agreement version ${row.version} no longer validates: ${parsed.problems[0]?.path}: ${parsed.problems[0]?.message}`,
    );
  return {
    version: Number(row.version),
    agreement: parsed.agreement,
    digest: row.digest,
    activatedAt: row.activated_at ? new Date(row.activated_at) : null,
  };
}

/**
 * Installs the first agreement of a room (from PARITY_AGREEMENT or the demo). Later changes
 * go through co-signed proposals; this refuses to replace an active agreement.
 */
export async function installInitialAgreement(
  db: ControlDb,
  agreement: Agreement,
  source: string,
  now: Date,
): Promise<AgreementVersion> {
  return db.transaction().execute(async (tx) => {
    const existing = await tx.selectFrom('agreement_versions').select('version').limit(1).executeTakeFirst();
    if (existing) throw new Error('the room already has an agreement; change it through a proposal');
    const digest = agreementDigest(agreement);
    await tx
      .insertInto('agreement_versions')
      .values({ version: 1, document: JSON.stringify(agreement), digest, source, created_at: now, activated_at: now })
      .execute();
    for (const p of agreement.partners) {
      await tx
        .insertInto('partners')
        .values({ id: p.id, name: p.name, created_at: now })
        .onConflict((oc) => oc.column('id').doUpdateSet({ name: p.name }))
        .execute();
    }
    return { version: 1, agreement, digest, activatedAt: now };
  });
}
