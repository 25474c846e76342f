import {
  jsonColumn,
  type AgreementVersionRow,
  type ControlDb,
  type ControlTx,
  type NewAgreementVersion,
  type Partner,
} from '../platform/control-db.js';
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
 * Installs the first agreement of a room (from PARITY_AGREEMENT or the demo), in the caller's
 * transaction. Later changes go through co-signed proposals; this refuses to replace an active
 * agreement.
 */
export async function installInitialAgreement(
  tx: ControlTx,
  agreement: Agreement,
  source: string,
  now: Date,
): Promise<AgreementVersion> {
  const existing = await tx.selectFrom('agreement_versions').select('version').limit(1).executeTakeFirst();
  if (existing) throw new Error('the room already has an agreement; change it through a proposal');
  const digest = agreementDigest(agreement);
  await createAgreementVersion(tx, {
    version: 1,
    document: JSON.stringify(agreement),
    digest,
    source,
    created_at: now,
    activated_at: now,
  });
  await upsertPartners(tx, agreement.partners, now);
  return { version: 1, agreement, digest, activatedAt: now };
}

export async function createAgreementVersion(db: ControlDb, row: NewAgreementVersion): Promise<void> {
  await db.insertInto('agreement_versions').values(row).execute();
}

/** The partners of an agreement version: new ones are added, known ones take its name. */
export async function upsertPartners(
  db: ControlDb,
  partners: { id: string; name: string }[],
  now: Date,
): Promise<void> {
  for (const p of partners) {
    await db
      .insertInto('partners')
      .values({ id: p.id, name: p.name, created_at: now })
      .onConflict((oc) => oc.column('id').doUpdateSet({ name: p.name }))
      .execute();
  }
}

/** The stored document of a version (as the driver hands it over: see jsonColumn). */
export async function findAgreementDocument(db: ControlDb, version: number): Promise<unknown> {
  const row = await db
    .selectFrom('agreement_versions')
    .select('document')
    .where('version', '=', version)
    .executeTakeFirstOrThrow();
  return row.document;
}

/** The agreement of a stored version, or undefined when there is none or it no longer validates. */
export async function findAgreementOf(db: ControlDb, version: number): Promise<Agreement | undefined> {
  const row = await db
    .selectFrom('agreement_versions')
    .select('document')
    .where('version', '=', version)
    .executeTakeFirst();
  if (!row) return undefined;
  const parsed = validateAgreement(jsonColumn<unknown>(row.document));
  return parsed.ok ? parsed.agreement : undefined;
}

/** Every KPI id any stored version named (a version's document as stored, read leniently). */
export async function listKpiIdsOfAllVersions(db: ControlDb): Promise<Set<string>> {
  const rows = await db.selectFrom('agreement_versions').select('document').execute();
  const ids = new Set<string>();
  for (const r of rows) {
    const doc = jsonColumn<{ kpis?: { id?: unknown }[] }>(r.document);
    for (const k of doc?.kpis ?? []) if (typeof k?.id === 'string') ids.add(k.id);
  }
  return ids;
}

/** The highest version number stored (activated or not). */
export async function findLatestAgreementVersion(db: ControlDb): Promise<number> {
  const latest = await db
    .selectFrom('agreement_versions')
    .select((eb) => eb.fn.max('version').as('v'))
    .executeTakeFirstOrThrow();
  return Number(latest.v);
}

/** Every stored version without its document, newest first. */
export async function listAgreementVersions(
  db: ControlDb,
): Promise<Pick<AgreementVersionRow, 'version' | 'digest' | 'source' | 'activated_at' | 'proposal_id'>[]> {
  return db
    .selectFrom('agreement_versions')
    .select(['version', 'digest', 'source', 'activated_at', 'proposal_id'])
    .orderBy('version', 'desc')
    .execute();
}

export async function findPartnerById(db: ControlDb, id: string): Promise<Pick<Partner, 'id'> | undefined> {
  return db.selectFrom('partners').select('id').where('id', '=', id).executeTakeFirst();
}
