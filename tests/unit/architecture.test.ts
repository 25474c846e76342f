import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../services/platform/paths.js';

const root = packageRoot();

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every relative import of a file, as written. */
function imports(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
}

/** Every service folder but the shared plumbing: the list grows with the services. */
const services = readdirSync(join(root, 'services'), { withFileTypes: true })
  .filter((e) => e.isDirectory() && e.name !== 'platform')
  .map((e) => e.name);

describe('where things live: arrows point down', () => {
  it('services/platform imports no service and nothing above the services', () => {
    const offending = tsFiles(join(root, 'services/platform')).flatMap((f) =>
      imports(f)
        .filter((spec) => services.some((d) => spec.startsWith(`../${d}/`)) || spec.includes('assembly/'))
        .map((spec) => `${relative(root, f)} → ${spec}`),
    );
    expect(offending).toEqual([]);
  });

  it('no service imports the assembly', () => {
    const offending = tsFiles(join(root, 'services')).flatMap((f) =>
      imports(f)
        .filter((spec) => spec.includes('assembly/'))
        .map((spec) => `${relative(root, f)} → ${spec}`),
    );
    expect(offending).toEqual([]);
  });

  it('the check sees imports (a control that it can fail)', () => {
    expect(services).toEqual(expect.arrayContaining(['ingest', 'query', 'alerts', 'steering', 'feedback']));
    expect(imports(join(root, 'assembly/app.ts')).some((s) => s.includes('/services/ingest/'))).toBe(true);
  });
});

describe('the image', () => {
  it('copies into its build stage every folder `npm run build` compiles, and the dashboard', () => {
    const build = readFileSync(join(root, 'Dockerfile'), 'utf8').split(/^FROM /m)[1]!; // the first stage
    const copied = new Set([...build.matchAll(/^COPY (?!--)(\S+) /gm)].map((m) => m[1]!));
    const { include } = JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    expect(include.length).toBeGreaterThan(0);
    expect(include.filter((dir) => !copied.has(dir))).toEqual([]);
    expect(copied.has('web')).toBe(true);
  });
});
