import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The pid of a room serving this data directory, if one is alive. */
export function runningRoomPid(dataDir: string): number | undefined {
  const file = join(dataDir, 'room.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid === process.pid ? undefined : pid;
  } catch {
    return undefined;
  }
}
