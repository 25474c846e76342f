#!/usr/bin/env node
// The published entry point runs the compiled CLI; `npm install` builds it (prepare).
import('../dist/assembly/cli.js')
  .then((m) => m.main(process.argv))
  .catch((err) => {
    process.stderr.write(`parity: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
