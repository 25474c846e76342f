import { Agent, setGlobalDispatcher } from 'undici';

/**
 * Every test's HTTP client (global fetch and undici's own calls share this dispatcher) drops a
 * kept-alive socket after 2 s idle, well before the room's own keepAliveTimeout (10 s,
 * assembly/app.ts). Left to undici's default, a client reuses an idle socket until the room's
 * hint less a second; on a loaded machine the room's timer can fire first, and a request sent on
 * that socket as it closes fails with ECONNRESET (seen in a clean-clone CI run). A test about
 * keep-alive itself makes its own Agent.
 */
setGlobalDispatcher(
  new Agent({ keepAliveTimeout: 2_000, keepAliveMaxTimeout: 2_000, keepAliveTimeoutThreshold: 8_000 }),
);
