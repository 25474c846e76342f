import type { AgreementVersion } from './agreement-schema.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { ControlDbHandle } from './control-db.js';
import type { DuckStore } from './duck-store.js';

/** An access or change worth remembering; never values, pseudonyms or tokens. */
export interface AuditEntry {
  actor: string;
  partnerId: string | null;
  action: string;
  target?: string | null;
  details?: Record<string, unknown>;
}

/**
 * Everything the services share: the one config, clock, databases, secret and agreement.
 * Opened by the assembly (assembly/open-room.ts); the services only use it.
 */
export interface Room {
  config: Config;
  clock: Clock;
  control: ControlDbHandle;
  duck: DuckStore;
  secret: Buffer;
  /** Keys of the pseudonym rotations in force, oldest first (ingest re-keys new pseudonyms with them). */
  pseudonymRotations: readonly Buffer[];
  /** The agreement in force; a new version comes into force with a snapshot of its own (DuckStore.adoptAgreement). */
  agreement(): AgreementVersion;
  /** Puts `v` in force at once (ingest and reads take it from now) and calls the listeners. */
  setAgreement(v: AgreementVersion): void;
  /** Calls `listener` after each new version takes effect (the rollups rebuild what changed). */
  onAgreement(listener: (v: AgreementVersion) => void): void;
  audit(entry: AuditEntry): Promise<void>;
  close(): Promise<void>;
}

/** A start-up or command-line failure told to the user in one line. */
export class StartupError extends Error {
  override name = 'StartupError';
}
