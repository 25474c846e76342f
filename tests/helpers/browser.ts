import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { webDist } from '../../assembly/web-routes.js';

/** Debian's Chromium (PARITY_CHROMIUM overrides). Missing: the suite fails in CI, and says how to install it here. */
export function chromiumPath(): string | undefined {
  const p = process.env['PARITY_CHROMIUM'] ?? '/usr/bin/chromium';
  return existsSync(p) ? p : undefined;
}

export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath)
    throw new Error('Chromium is not installed: apt-get install -y chromium (or set PARITY_CHROMIUM)');
  if (!existsSync(join(webDist(), 'index.html'))) throw new Error('the dashboard is not built: npm run build');
  return chromium.launch({
    executablePath,
    // Playwright gives every launch a fresh, empty user-data-dir of its own.
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** Screenshots land here as test artifacts (CI keeps test-results/). */
export function artifactDir(): string {
  const dir = join('test-results', 'screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}
