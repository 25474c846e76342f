import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The room secret (pseudonymisation and signing): PARITY_SECRET, else the file `secret` in
 * the data directory, created with mode 0600 on first start. It is never logged.
 */
export function loadRoomSecret(
  dataDir: string,
  fromEnv: string | undefined,
): { secret: Buffer; source: 'env' | 'file' | 'generated' } {
  if (fromEnv) return { secret: Buffer.from(fromEnv, 'utf8'), source: 'env' };
  const file = join(dataDir, 'secret');
  if (existsSync(file)) {
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) chmodSync(file, 0o600);
    const text = readFileSync(file, 'utf8').trim();
    if (text.length < 32) throw new Error(`the secret file ${file} is shorter than 32 characters`);
    return { secret: Buffer.from(text, 'utf8'), source: 'file' };
  }
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  return { secret: Buffer.from(readFileSync(file, 'utf8').trim(), 'utf8'), source: 'generated' };
}

/**
 * Keys of pseudonym rotations (generation 2 on; generation 1 is the room secret): the file
 * `pseudonym-keys` in the data directory, one key per line, mode 0600. DuckDB's
 * room_settings.pseudonym_generation says how many are in use; a line beyond it is a rotation
 * that did not commit, and the next rotation takes it.
 */
export const ROTATION_KEYS_FILE = 'pseudonym-keys';

function rotationLines(dataDir: string): string[] {
  const file = join(dataDir, ROTATION_KEYS_FILE);
  if (!existsSync(file)) return [];
  if (statSync(file).mode & 0o077) chmodSync(file, 0o600);
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** The rotation keys a store at `generation` uses, oldest first; a missing one stops start-up. */
export function loadRotationKeys(dataDir: string, generation: number): Buffer[] {
  const lines = rotationLines(dataDir);
  if (lines.length < generation - 1) {
    throw new Error(
      `the points were re-keyed ${generation - 1} time(s) but ${join(dataDir, ROTATION_KEYS_FILE)} holds ${lines.length} key(s): restore it from the backup that goes with the data directory`,
    );
  }
  return lines.slice(0, generation - 1).map((l) => Buffer.from(l, 'utf8'));
}

/** The key of generation `generation` (≥ 2): the uncommitted one left by a crash, or a new one written first. */
export function ensureRotationKey(dataDir: string, generation: number): Buffer {
  const lines = rotationLines(dataDir);
  if (lines.length < generation - 2)
    throw new Error(`${join(dataDir, ROTATION_KEYS_FILE)} lacks the keys before generation ${generation}`);
  if (lines.length < generation - 1) {
    lines.push(randomBytes(32).toString('base64url'));
    const file = join(dataDir, ROTATION_KEYS_FILE);
    writeFileSync(`${file}.tmp`, lines.join('\n') + '\n', { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }
  return Buffer.from(lines[generation - 2]!, 'utf8');
}
