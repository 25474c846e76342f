// One client cannot hold the room's connections (a red team's finding: GETs announcing a
// gigabyte body sent a byte every few seconds kept 20,000 sockets open, and then every partner's
// pushes and reads failed to connect): a request answered before its body was read closes its
// connection, and past PARITY_MAX_CONNECTIONS_PER_ADDRESS a new connection is closed on arrival.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';
import { timeout } from '../helpers/timeouts.js';

let t: TestRoom;
beforeAll(async () => {
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off', PARITY_MAX_CONNECTIONS_PER_ADDRESS: '8' } });
});
afterAll(async () => t?.close());

const port = () => Number(new URL(t.url).port);
const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await t.metrics())?.[1]);

/** A socket to the room, open; `closed` resolves when the room (or the test) ends it. */
function open(): Promise<{ socket: Socket; data: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = connect(port(), '127.0.0.1');
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (data += d));
    socket.once('error', () => undefined);
    socket.once('connect', () => resolve({ socket, data: () => data, closed }));
    socket.once('error', reject);
  });
}

describe('connections a client holds', () => {
  it('a GET answered before its announced body arrives closes its connection with the answer', async () => {
    const c = await open();
    // Keep-alive, a body of a gigabyte announced, one byte of it sent.
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\nx');
    await c.closed;
    expect(c.data()).toMatch(/^HTTP\/1\.1 200/);
    expect(c.data()).toMatch(/\r\nconnection: close\r\n/i);
    // A GET without a body keeps its connection for the next request (keep-alive as before).
    const k = await open();
    k.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await vi.waitFor(() => expect(k.data()).toMatch(/^HTTP\/1\.1 200/), { timeout: timeout(5_000) });
    expect(k.socket.destroyed).toBe(false);
    k.socket.destroy();
  });

  it('past the connections one address may hold, a new one is closed on arrival; the room answers once they go', async () => {
    const held = await Promise.all(Array.from({ length: 8 }, () => open()));
    // Each holds its connection: headers begun, never finished.
    for (const h of held) h.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const ninth = await open();
    await ninth.closed;
    expect(ninth.data()).toBe('');
    for (const h of held) expect(h.socket.destroyed).toBe(false);
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => h.closed));
    await vi.waitFor(async () => expect((await fetch(`${t.url}/healthz`)).status).toBe(200), {
      timeout: timeout(5_000),
    });
    expect(await metric('parity_connections_refused_total')).toBeGreaterThanOrEqual(1);
  });
});
