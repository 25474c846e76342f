import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The package root (where package.json is), from the sources and from the compiled dist/. */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'sql'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the Parity package root (package.json beside sql/)');
    dir = up;
  }
  return (root = dir);
}

export const sqlDir = () => join(packageRoot(), 'sql');
export const demoAgreementFile = () => join(packageRoot(), 'fixtures', 'demo-agreement.yaml');
