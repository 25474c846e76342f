import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import ts from 'typescript';

/**
 * The sources the published `parity` is built from (tsconfig.build.json: what `npm run build`
 * compiles), transpiled file by file without type checking into a temporary package root:
 * every other entry of the real root (package.json, sql/, web/, node_modules/, fixture files)
 * is a symlink, so paths the code derives from its own location resolve as in dist/.
 *
 * Spawned `parity` processes run from here: under tsx every process (and every ingest worker
 * thread) pays the loader's hooks on each of its thousands of module loads, about two CPU-seconds
 * a process; plain JavaScript starts in half the time. Transpiling takes a second, once per run.
 */
export function transpileSources(root: string): { dir: string; remove: () => void } {
  const configFile = join(root, 'tsconfig.build.json');
  const { config, error } = ts.readConfigFile(configFile, ts.sys.readFile);
  if (error) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root, undefined, configFile);
  const options: ts.CompilerOptions = {
    ...parsed.options,
    // package.json says "type": "module": every file is an ES module (NodeNext emits the same).
    module: ts.ModuleKind.ESNext,
    noEmit: false,
    declaration: false,
    sourceMap: false,
  };
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'parity-js-')));
  try {
    const sources = parsed.fileNames.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
    // Top-level folders holding sources are mirrored; everything else is linked.
    const mirrored = new Set(sources.map((f) => relative(root, f).split(sep)[0]!));
    for (const entry of readdirSync(root)) {
      if (entry === '.git' || mirrored.has(entry)) continue;
      symlinkSync(join(root, entry), join(dir, entry));
    }
    for (const top of mirrored) mirror(root, dir, top, options);
    return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Copies one folder of the root: .ts files transpiled to .js, any other file linked. */
function mirror(root: string, dir: string, rel: string, options: ts.CompilerOptions): void {
  mkdirSync(join(dir, rel), { recursive: true });
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const from = join(root, rel, e.name);
    if (e.isDirectory()) mirror(root, dir, join(rel, e.name), options);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
      const out = ts.transpileModule(readFileSync(from, 'utf8'), { compilerOptions: options, fileName: from });
      const to = join(dir, rel, e.name.replace(/\.ts$/, '.js'));
      mkdirSync(dirname(to), { recursive: true });
      writeFileSync(to, out.outputText);
    } else symlinkSync(from, join(dir, rel, e.name));
  }
}
