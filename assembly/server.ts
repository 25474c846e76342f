import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import type { Room } from '../services/platform/room.js';
import { runningRoomPid } from '../services/platform/room-lock.js';

/**
 * Listens and closes gracefully on SIGTERM/SIGINT: new requests get 503, batches in flight
 * finish landing, then DuckDB is checkpointed and the control plane closed.
 */
export async function serve(room: Room, opts: { onListening?: (url: string) => void } = {}): Promise<FastifyInstance> {
  const running = runningRoomPid(room.config.dataDir);
  if (running) throw new Error(`another room (pid ${running}) serves ${room.config.dataDir}`);
  const app = await buildApp(room);
  const pidFile = join(room.config.dataDir, 'room.pid');
  // The room closes after the app: Fastify runs the root's onClose hooks before its plugins', and
  // the workers (rollups, alerts) stop in a plugin's onClose, so they must not outlive the store.
  const close = async () => {
    await app.close();
    await room.close();
    rmSync(pidFile, { force: true });
  };
  await app.listen({ port: room.config.port, host: room.config.host });
  writeFileSync(pidFile, `${process.pid}\n`);
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : room.config.port;
  opts.onListening?.(`http://localhost:${port}`);
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info(`${signal}: draining in-flight batches, then closing`);
    const force = setTimeout(() => {
      app.log.error('shutdown took longer than 30 s; exiting');
      process.exit(1);
    }, 30_000);
    force.unref();
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'error while closing');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  return app;
}
