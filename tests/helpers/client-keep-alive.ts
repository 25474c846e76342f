import { Agent, setGlobalDispatcher } from 'undici';

/**
 * Every test's HTTP client (global fetch and undici's own calls share this dispatcher) keeps an
 * idle kept-alive socket for 2 s at most, well inside the room's own keepAliveTimeout (10 s,
 * assembly/app.ts). By default undici reuses an idle socket until the server's Keep-Alive hint
 * less 2 s; on a loaded machine the room's timer can fire first, and a request sent on that
 * socket as it closes fails with ECONNRESET (seen in a clean-clone CI run).
 */
setGlobalDispatcher(
  new Agent({ keepAliveTimeout: 2_000, keepAliveMaxTimeout: 2_000, keepAliveTimeoutThreshold: 1_000 }),
);
