import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  findActiveAgreement,
  installInitialAgreement,
  type AgreementVersion,
} from '../governance/agreement-repository.js';
import { loadAgreementFile } from '../governance/agreement-schema.js';
import { AuditChain, type AuditEntry } from '../governance/audit-repository.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { inTransaction, openControlDb, type ControlDbHandle } from './control-db.js';
import { DuckStore } from './duck-store.js';
import { migrateControlDb } from './migrate.js';
import { loadRotationKeys, loadRoomSecret } from './secret.js';

/** Everything the services share: the one config, clock, databases, secret and agreement. */
export interface Room {
  config: Config;
  clock: Clock;
  control: ControlDbHandle;
  duck: DuckStore;
  secret: Buffer;
  /** Keys of the pseudonym rotations in force, oldest first (ingest re-keys new pseudonyms with them). */
  pseudonymRotations: readonly Buffer[];
  /** The agreement in force; refreshed when a new version activates (a new time zone needs duck.localise). */
  agreement(): AgreementVersion;
  setAgreement(v: AgreementVersion): void;
  audit(entry: AuditEntry): Promise<void>;
  /** Work that runs beside the room (evaluation, delivery, rollups) stops first when the room closes. */
  beforeClose(fn: () => Promise<void>): void;
  close(): Promise<void>;
}

export class StartupError extends Error {
  override name = 'StartupError';
}

export interface OpenRoomOptions {
  clock?: Clock;
  /** Agreement file to install when the room has none (PARITY_AGREEMENT wins). */
  defaultAgreementFile?: string;
  /** Keep PGlite in memory (tests). */
  memoryControlDb?: boolean;
  log?: Pick<Logger, 'info' | 'warn' | 'error'>;
}

/** Opens (and on first start initialises) the room's data: migrations, secret, agreement. */
export async function openRoom(config: Config, opts: OpenRoomOptions = {}): Promise<Room> {
  const clock = opts.clock ?? systemClock;
  const { secret, source } = loadRoomSecret(config.dataDir, config.secret);
  if (source === 'generated')
    opts.log?.info(`generated a new room secret in ${join(config.dataDir, 'secret')} (mode 0600)`);
  const control = await openControlDb({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    memory: opts.memoryControlDb ?? false,
  });
  // The one writer of this process's audit entries on the control plane.
  const chain = new AuditChain(control.db);
  let duck: DuckStore | undefined;
  try {
    const applied = await migrateControlDb(control.db);
    if (applied.length) opts.log?.info(`control plane (${control.kind}): applied migrations ${applied.join(', ')}`);
    let active = await findActiveAgreement(control.db);
    if (!active) {
      const file = config.agreementFile ?? opts.defaultAgreementFile;
      if (!file)
        throw new StartupError(
          'the room has no agreement yet: set PARITY_AGREEMENT to an agreement file (for example fixtures/demo-agreement.yaml)',
        );
      const parsed = loadAgreementFile(file);
      if (!parsed.ok)
        throw new StartupError(
          `PARITY_AGREEMENT ${file} is invalid: ${parsed.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
        );
      const agreement = parsed.agreement;
      active = await inTransaction(control.db, (tx) => installInitialAgreement(tx, agreement, file, clock.now()));
      await chain.append(
        {
          actor: 'system',
          partnerId: null,
          action: 'agreement.installed',
          target: `v${active.version}`,
          details: { source: file, digest: active.digest },
        },
        clock.now(),
      );
      opts.log?.info(`installed agreement ${parsed.agreement.partnership.id} from ${file} as version 1`);
    }
    // Spool segments of batches a crash interrupted never landed; they go.
    rmSync(join(config.dataDir, 'spool'), { recursive: true, force: true });
    duck = await DuckStore.open(
      join(config.dataDir, 'points.duckdb'),
      { size: config.ingestConcurrency, queue: config.ingestQueue },
      config.duckdbMemory,
    );
    await duck.localise(active.agreement.partnership.timezone);
    const pseudonymRotations = loadRotationKeys(config.dataDir, duck.pseudonymGeneration);
    let current = active;
    const d = duck;
    const closers: (() => Promise<void>)[] = [];
    return {
      config,
      clock,
      control,
      duck: d,
      secret,
      pseudonymRotations,
      agreement: () => current,
      setAgreement: (v) => void (current = v),
      audit: async (entry) => void (await chain.append(entry, clock.now())),
      beforeClose: (fn) => void closers.push(fn),
      close: async () => {
        for (const fn of closers.splice(0)) await fn();
        await d.close();
        await control.close();
      },
    };
  } catch (err) {
    if (duck) await duck.close().catch(() => undefined);
    await control.close().catch(() => undefined);
    throw err;
  }
}
