import { join } from 'node:path';
import type { Config } from '../platform/config.js';
import { openControlDb } from '../platform/control-db.js';
import { DuckStore } from '../platform/duck-store.js';
import { migrateControlDb } from '../platform/migrate.js';
import { ensureRotationKey } from '../platform/secret.js';
import { partnerKey, rekey } from '../ingest/pseudonymiser.js';
import { AuditChain } from './audit-repository.js';

export interface RotationResult {
  generation: number;
  pseudonyms: number;
  points: number;
}

/**
 * Rotates the pseudonymisation secret on a stopped room: a new key is written to the key file,
 * every stored pseudonym is re-keyed under it (HMAC of the old pseudonym with the new key, per
 * partner) in one DuckDB transaction, and ingest afterwards applies the same step to new
 * pseudonyms — so a subject keeps one pseudonym across the rotation, distinct counts stay
 * exact, and what is stored no longer matches what the old secret alone would compute.
 * Aggregates do not change; neither do snapshots or digests.
 */
export async function rotatePseudonymSecret(
  config: Config,
  onProgress: (done: number) => void = () => {},
): Promise<RotationResult> {
  const duck = await DuckStore.open(
    join(config.dataDir, 'points.duckdb'),
    { size: 1, queue: 0 },
    config.duckdbMemory,
    config.duckdbThreads,
  );
  try {
    const generation = duck.pseudonymGeneration + 1;
    const key = ensureRotationKey(config.dataDir, generation);
    const keys = new Map<string, Buffer>();
    const { pseudonyms, points } = await duck.rekeyPseudonyms(
      generation,
      (partner, subject) => {
        let k = keys.get(partner);
        if (!k) keys.set(partner, (k = partnerKey(key, partner)));
        return rekey(k, subject);
      },
      onProgress,
    );
    const control = await openControlDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    try {
      await migrateControlDb(control.db);
      await new AuditChain(control.db).append(
        // No counts: every partner reads this entry, and the room's points less its own are the
        // others' volume (a red team read another partner's withheld day off it, as once off
        // retention.deleted). The host's terminal shows them (the files hold them anyway).
        { actor: 'cli', partnerId: null, action: 'secret.rotated', details: { generation } },
        new Date(),
      );
    } finally {
      await control.close();
    }
    return { generation, pseudonyms, points };
  } finally {
    await duck.close();
  }
}
