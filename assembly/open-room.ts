import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { findActiveAgreement, installInitialAgreement } from '../services/governance/agreement-repository.js';
import { addedSince } from '../services/governance/proposal-service.js';
import { loadAgreementFile, type Agreement, type AgreementVersion } from '../services/platform/agreement-schema.js';
import { AuditChain } from '../services/governance/audit-repository.js';
import { ROOM_PARTNER } from '../services/governance/retention.js';
import { systemClock, type Clock } from '../services/platform/clock.js';
import type { Config } from '../services/platform/config.js';
import { inTransaction, openControlDb } from '../services/platform/control-db.js';
import { DuckStore } from '../services/platform/duck-store.js';
import { releaser } from '../services/query/release.js';
import { migrateControlDb } from '../services/platform/migrate.js';
import { StartupError, type Room } from '../services/platform/room.js';
import { loadRotationKeys, loadRoomSecret } from '../services/platform/secret.js';

export interface OpenRoomOptions {
  clock?: Clock;
  /** Agreement file to install when the room has none (PARITY_AGREEMENT wins). */
  defaultAgreementFile?: string;
  /**
   * What of the default file's agreement goes in as version 1 (the demo: its first version, which
   * the seeding then amends to the file's). Not applied to PARITY_AGREEMENT's file.
   */
  firstVersion?: { of: (a: Agreement) => Agreement; source: string; at?: Date };
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
  // The one writer of this process's audit entries on the control plane; on PostgreSQL a second
  // group travels while the first commits.
  const chain = new AuditChain(control.db, control.kind === 'postgres' ? 2 : 1);
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
      const first = config.agreementFile === undefined ? opts.firstVersion : undefined;
      const agreement = first ? first.of(parsed.agreement) : parsed.agreement;
      const from = first ? `${file} (${first.source})` : file;
      const installedAt = first?.at ?? clock.now();
      active = await inTransaction(control.db, (tx) => installInitialAgreement(tx, agreement, from, installedAt));
      await chain.append(
        {
          actor: 'system',
          partnerId: null,
          action: 'agreement.installed',
          target: `v${active.version}`,
          details: { source: from, digest: active.digest },
        },
        installedAt,
      );
      opts.log?.info(`installed agreement ${agreement.partnership.id} from ${from} as version 1`);
    }
    // Spool segments of batches a crash interrupted never landed; they go.
    rmSync(join(config.dataDir, 'spool'), { recursive: true, force: true });
    duck = await DuckStore.open(
      join(config.dataDir, 'points.duckdb'),
      { size: config.ingestConcurrency, queue: config.ingestQueue },
      config.duckdbMemory,
      config.duckdbThreads,
    );
    const d = duck;
    let current = active;
    // Every snapshot's atoms are released (or held) by the disclosure model before readers see it,
    // whoever lands them (the served app, the demo seed, the CLI).
    d.releaser = releaser(() => current.agreement);
    // A version activated while the store last ran without adopting it (a failed or interrupted
    // adoption) takes its snapshot now, and so does a store from before versions took snapshots
    // whose points are on another zone's days (moving them changes what its snapshots said); any
    // other store that never recorded one records the version in force.
    const recorded = d.agreementInForce;
    const zone = active.agreement.partnership.timezone;
    const stored = await d.storedTimezone();
    if (recorded ? recorded.version !== active.version : stored !== undefined && stored !== zone)
      await d.adoptAgreement(
        { version: active.version, timezone: zone },
        { partner: ROOM_PARTNER, at: clock.now() },
        () => undefined,
        // Against the version the store last answered under: what readers had until now.
        addedSince(control.db, active.agreement, opts.log),
      );
    await d.localise(zone);
    if (!d.agreementInForce) await d.recordAgreement(active.version);
    const pseudonymRotations = loadRotationKeys(config.dataDir, d.pseudonymGeneration);
    const listeners: ((v: AgreementVersion) => void)[] = [];
    return {
      config,
      clock,
      control,
      duck: d,
      secret,
      pseudonymRotations,
      agreement: () => current,
      setAgreement: (v) => {
        current = v;
        for (const listener of listeners) listener(v);
      },
      onAgreement: (listener) => void listeners.push(listener),
      audit: async (entry) => void (await chain.append(entry, clock.now())),
      close: async () => {
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
