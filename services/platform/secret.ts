import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The room secret (pseudonymisation and signing): PARITY_SECRET, else the file `secret` in
 * the data directory, created with mode 0600 on first start. It is never logged.
 */
export function loadRoomSecret(dataDir: string, fromEnv: string | undefined): { secret: Buffer; source: 'env' | 'file' | 'generated' } {
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
