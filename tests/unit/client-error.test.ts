// The room's answer to requests Node's HTTP parser refuses (services/platform/input-hygiene.ts),
// on a real server and real sockets: what the room's own tests cannot reach in their time (Node's
// 60 s header timeout) runs here with a short one, and a refusal after a response has begun on
// the connection writes no second response into it.
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { answerClientError } from '../../services/platform/input-hygiene.js';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  server = undefined;
});

/** A server answering its parser's refusals as the room does, with the handler given. */
async function listen(handler: Parameters<typeof createServer>[1], timeouts = {}): Promise<number> {
  server = createServer({ connectionsCheckingInterval: 50, ...timeouts }, handler);
  server.on('clientError', answerClientError);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** Writes `parts` in turn (`pause` ms apart) and resolves with all the server sent before it closed. */
function exchange(port: number, parts: string[], pause = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', async () => {
      for (const p of parts) {
        socket.write(p);
        await new Promise((r) => setTimeout(r, pause));
      }
    });
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (data += d));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(data) : reject(err)));
    socket.on('close', () => resolve(data));
  });
}

describe('requests the HTTP parser refuses', () => {
  it('headers that do not arrive in time get a 408 problem naming the request, and the connection closes', async () => {
    const port = await listen((_req, res) => res.end('never'), { headersTimeout: 200, requestTimeout: 300 });
    const answer = await exchange(port, ['GET / HTTP/1.1\r\nHost: x\r\n', 'X-Slow: 1'], 20);
    const [head = '', body = ''] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(head).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(body)).toMatchObject({ status: 408, field: 'request' });
  });

  it('a body that breaks off under a response already begun closes the connection without a second response', async () => {
    const port = await listen((req, res) => {
      // The response begins before the body is read, as a streamed answer would.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.flushHeaders();
      req.resume();
    });
    const answer = await exchange(
      port,
      ['POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', '5\r\nhello\r\n', 'zz\r\n'],
      50,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect(answer).not.toMatch(/problem/);
  });

  it('the same broken body before any response gets the 400 problem naming the body', async () => {
    const port = await listen((req, res) => {
      req.resume();
      req.on('end', () => res.end('read'));
    });
    const answer = await exchange(
      port,
      ['POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', '5\r\nhello\r\n', 'zz\r\n'],
      50,
    );
    const [head = '', body = ''] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(JSON.parse(body)).toMatchObject({ status: 400, field: 'body' });
  });
});

describe('bytes that are not HTTP behind a request still being answered', () => {
  it('wait for that answer once, however many chunks of them follow, and then get one problem', async () => {
    let listeners = 0;
    const port = await listen((_req, res) => {
      // Answered slowly: the garbage behind the request arrives in many chunks meanwhile.
      setTimeout(() => {
        listeners = res.listenerCount('finish') + res.listenerCount('close');
        res.end('ok');
      }, 400);
    });
    const garbage = Array.from({ length: 200 }, () => 'X');
    const data = await exchange(port, ['GET / HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE', ...garbage], 1);
    expect([...data.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(['200', '400']);
    // The deferral added its two listeners once, not two for each later chunk.
    expect(listeners).toBeLessThan(10);
  });
});
