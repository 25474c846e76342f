#!/usr/bin/env node
// Prints what the process wants under the PARITY_MEMORY_LIMIT of its environment and does not
// have yet (config.ts processMemorySettings): one line per setting, a flag for `node` (`--…`) or
// a variable (`NAME=value`). bin/parity reads it before it starts Node. An invalid configuration
// prints nothing here: the room's own start names the variable.
import('../dist/services/platform/config.js')
  .then(({ loadConfig, processMemorySettings }) => {
    let config;
    try {
      config = loadConfig(process.env);
    } catch {
      return;
    }
    const wanted = processMemorySettings(config.memoryLimit, process.env, []);
    const lines = [...wanted.nodeFlags, ...Object.entries(wanted.env).map(([k, v]) => `${k}=${v}`)];
    if (lines.length) process.stdout.write(`${lines.join('\n')}\n`);
  })
  .catch((err) => {
    process.stderr.write(`parity: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
