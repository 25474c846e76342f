import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { inject } from 'vitest';
import { packageRoot } from '../../services/platform/paths.js';
import { timeout } from './timeouts.js';

/** The CLI's source, relative to the package root. */
const CLI = 'assembly/cli.ts';

/**
 * `node` arguments that run `parity <args>`: the run's sources transpiled to JavaScript (see
 * tests/helpers/transpile.ts); run them with cwd packageRoot().
 */
export function parityArgs(args: readonly string[]): string[] {
  return [join(inject('parityJs'), CLI.replace(/\.ts$/, '.js')), ...args];
}

const execFileAsync = promisify(execFile);

/** Runs `parity <args>` to its end as a user would (cwd the package root): its exit code and output. */
export async function runParity(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileAsync(process.execPath, parityArgs(args), {
      cwd: packageRoot(),
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export interface SpawnedRoom {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Runs `parity <command>` in a child process and waits until /healthz answers: with `node` on the
 * run's sources, or with `launcher` through the package's own `bin/parity` as a deployer starts
 * it (it runs the build in dist/, which `npm install` makes).
 */
export async function spawnRoom(
  env: Record<string, string>,
  command = 'serve',
  timeoutMs = timeout(60_000),
  how: 'node' | 'launcher' = 'node',
): Promise<SpawnedRoom> {
  const port = await freePort();
  const root = packageRoot();
  const [file, args] =
    how === 'node' ? [process.execPath, parityArgs([command])] : [join(root, 'bin/parity'), [command]];
  const child = spawn(file, args, {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (out += String(d)));
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code, signal) => {
      // A room ended by a signal it did not handle (a crash, a second SIGTERM) says which in its output.
      if (signal) out += `\n[the room exited on ${signal}]\n`;
      r(code);
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  let dead = false;
  void exited.then(() => (dead = true));
  while (Date.now() < deadline) {
    if (dead) throw new Error(`the room exited before serving:\n${out}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return { child, url, output: () => out, exited };
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`the room did not answer /healthz within ${timeoutMs} ms:\n${out}`);
}
