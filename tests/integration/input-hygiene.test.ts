// Issue #13, input hygiene: control characters in paths and query values, ambiguous headers and
// encodings the room does not decode get a 4xx problem naming the parameter — never a 500, never
// a stack trace in the log — and the bearer scheme is case-insensitive. Raw sockets send what
// fetch would refuse to (two Authorization headers, a gzip transfer coding).
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRoom, type TestRoom } from '../helpers/test-room.js';

let t: TestRoom;
beforeAll(async () => {
  // 3 s for a body: the timely slow body below sends its rest after 0.8 s, with room to spare
  // on a loaded machine (server and test share one event loop).
  t = await startTestRoom({ env: { PARITY_ALERTS: 'off', PARITY_BODY_SECONDS: '3' } });
});
afterAll(async () => t?.close());

interface Raw {
  status: number;
  headers: string;
  body: string;
}

/** One HTTP/1.1 request written byte for byte; the connection closes after the answer. */
function raw(request: string): Promise<Raw> {
  const { port } = new URL(t.url);
  return new Promise((resolve, reject) => {
    // Written, not ended: the server closes the connection after its answer (Connection: close).
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(request));
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (data += d));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, headers: head, body: rest.join('\r\n\r\n') });
    });
  });
}

/** How many tokens the admin's partner has: what a refused token request must not change. */
async function tokenCount(admin: string): Promise<number> {
  const res = await fetch(`${t.url}/v1/tokens`, { headers: { authorization: `Bearer ${admin}` } });
  return ((await res.json()) as { tokens: unknown[] }).tokens.length;
}

const lines = (...l: string[]) => `${l.join('\r\n')}\r\n\r\n`;
/** A request line and its headers, to the room's host, on a connection closed after the answer. */
const request = (line: string, ...headers: string[]) => lines(line, 'Host: 127.0.0.1', 'Connection: close', ...headers);

async function problem(path: string, init: RequestInit & { token?: string } = {}) {
  const headers = new Headers(init.headers);
  if (init.token) headers.set('authorization', `Bearer ${init.token}`);
  const res = await fetch(`${t.url}${path}`, { ...init, headers });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: text };
}

describe('input hygiene', () => {
  it('a control character in a path segment or a query value is a 400 naming the parameter', async () => {
    const admin = await t.token('acme', 'admin');
    const ingest = await t.token('acme', 'ingest');
    const analyst = await t.token('acme', 'analyst');
    const cases: [string, string, string, string][] = [
      // method, path, token, the field the problem names
      ['GET', '/v1/batches/%00', ingest, 'params.id'],
      ['GET', '/v1/batches/abc%0Adef', ingest, 'params.id'],
      ['DELETE', '/v1/tokens/%00', admin, 'params.id'],
      ['POST', '/v1/tokens/%7F/rotate', admin, 'params.id'],
      ['POST', '/v1/agreement/proposals/%00/approve', admin, 'params.id'],
      ['GET', '/v1/kpis/lead%01time/series', analyst, 'params.kpi'],
      ['GET', '/v1/incidents?kpi=x%00', analyst, 'querystring.kpi'],
      ['GET', '/v1/kpis/lead_time/series?grain=week&from=2026-01-01%00', analyst, 'querystring.from'],
      ['GET', '/v1/kpis?%00=1', analyst, 'querystring'],
      ['GET', '/v1/batches/%E0%A4%A', ingest, 'path'],
      ['GET', '/v1/no%00where', analyst, 'path'],
    ];
    for (const [method, path, token, field] of cases) {
      const r = await problem(path, { method, token });
      expect(r.status, `${method} ${path}`).toBe(400);
      expect(r.type, path).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(r.body), path).toMatchObject({ status: 400, field });
      expect(r.body, path).not.toContain('\u0000');
    }
    // Nothing reached a handler: no error was logged, and the room still answers.
    expect(t.logs.join('')).not.toMatch(/unhandled error|"level":50/);
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });

  it('the bearer scheme is case-insensitive; a malformed one is still 401', async () => {
    const token = await t.token('acme', 'analyst');
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR'])
      expect(
        (await fetch(`${t.url}/v1/kpis`, { headers: { authorization: `${scheme} ${token}` } })).status,
        scheme,
      ).toBe(200);
    for (const header of [`Basic ${token}`, `Bearer  ${token}`, `Bearer${token}`, 'Bearer'])
      expect((await fetch(`${t.url}/v1/kpis`, { headers: { authorization: header } })).status, header).toBe(401);
  });

  it('two Authorization or Content-Type headers, or a coding or charset the room does not decode, are refused and nothing lands', async () => {
    const token = await t.token('acme', 'ingest');
    const other = await t.token('globex', 'ingest');
    const before = t.room.duck.snapshots.latest;
    const body = '{"kpi":"lead_time","at":"2026-11-20T10:00:00Z","value":5,"subject":"S-1"}\n';
    const head = (...extra: string[]) =>
      request('POST /v1/points HTTP/1.1', ...extra, `Content-Length: ${body.length}`) + body;
    const cases: [string, number, string][] = [
      [
        head(`Authorization: Bearer ${token}`, `Authorization: Bearer ${other}`, 'Content-Type: application/x-ndjson'),
        400,
        'headers.authorization',
      ],
      [
        head(`Authorization: Bearer ${token}`, 'Content-Type: application/x-ndjson', 'Content-Type: text/csv'),
        400,
        'headers.content-type',
      ],
      [
        head(`Authorization: Bearer ${token}`, 'Content-Type: application/x-ndjson', 'Content-Encoding: gzip'),
        415,
        'headers.content-encoding',
      ],
      // A charset other than UTF-8, plain or quoted: the body would be read as UTF-8 all the same.
      ...[
        'application/x-ndjson; charset=latin1',
        'application/x-ndjson;Charset="UTF-16"',
        'text/csv; charset=windows-1252',
      ].map((type): [string, number, string] => [
        head(`Authorization: Bearer ${token}`, `Content-Type: ${type}`),
        415,
        'headers.content-type',
      ]),
    ];
    for (const [request, status, field] of cases) {
      const r = await raw(request);
      expect(r.status, field).toBe(status);
      expect(r.headers, field).toMatch(/content-type: application\/problem\+json/i);
      expect(JSON.parse(r.body), field).toMatchObject({ status, field });
    }
    // A transfer coding besides chunked: the body is never read as if it were plain.
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const te = await raw(
      request(
        'POST /v1/points HTTP/1.1',
        `Authorization: Bearer ${token}`,
        'Content-Type: application/x-ndjson',
        'Transfer-Encoding: gzip, chunked',
      ) + chunked,
    );
    expect(te.status).toBe(415);
    expect(JSON.parse(te.body)).toMatchObject({ field: 'headers.transfer-encoding' });
    expect(t.room.duck.snapshots.latest).toBe(before);
    // The same body, sent once and plainly, lands.
    const ok = await raw(
      head(`Authorization: Bearer ${token}`, 'Content-Type: application/x-ndjson', 'Content-Encoding: identity'),
    );
    expect(ok.status).toBe(202);
    expect(t.room.duck.snapshots.latest).toBe(before + 1);
    // UTF-8 and US-ASCII, however spelled, are read as they are; other parameters are no charset.
    for (const type of [
      'application/x-ndjson; charset=utf-8',
      'application/x-ndjson;charset="UTF8"',
      'application/x-ndjson; charset=US-ASCII',
      'application/x-ndjson; profile=charset',
    ]) {
      const same = await raw(head(`Authorization: Bearer ${token}`, `Content-Type: ${type}`));
      expect(same.status, type).toBe(202);
    }
    expect(t.room.duck.snapshots.latest).toBe(before + 5);
  });

  it('bytes the HTTP parser refuses, requests Node answers itself and one without Host get a problem naming the part at fault; nothing lands', async () => {
    const token = await t.token('globex', 'ingest');
    const analyst = await t.token('globex', 'analyst');
    const before = t.room.duck.snapshots.latest;
    const logsBefore = t.logs.length;
    const get = (...extra: string[]) => request('GET /v1/kpis HTTP/1.1', `Authorization: Bearer ${analyst}`, ...extra);
    const post = (...extra: string[]) =>
      request(
        'POST /v1/points HTTP/1.1',
        `Authorization: Bearer ${token}`,
        'Content-Type: application/x-ndjson',
        ...extra,
      );
    const point = '{"kpi":"error_rate","at":"2026-11-21T08:00:00Z","value":1,"subject":"P-9"}\n';
    const chunk = (data: string) => `${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n`;
    const cases: [string, string, number, string][] = [
      // what is wrong, the request, the status and the field the problem names
      ['a control character in a header name', get('X-Tr\u0001ce: 1'), 400, 'headers'],
      ["headers past Node's 16 KiB", get(`X-Padding: ${'p'.repeat(20_000)}`), 431, 'headers'],
      ['a method that is not a token', lines('G(T /v1/kpis HTTP/1.1', 'Host: 127.0.0.1'), 400, 'method'],
      ['an HTTP version that does not exist', lines('GET /v1/kpis HTTP/7.3', 'Host: 127.0.0.1'), 400, 'version'],
      ['lines ended by a bare LF', 'GET /v1/kpis HTTP/1.1\nHost: 127.0.0.1\n\n', 400, 'version'],
      [
        'two Content-Lengths',
        post('Content-Length: 3', `Content-Length: ${point.length}`) + point,
        400,
        'headers.content-length',
      ],
      ['a Content-Length that is not a number', post('Content-Length: 7e1') + point, 400, 'headers.content-length'],
      [
        'Content-Length beside chunked',
        post(`Content-Length: ${point.length}`, 'Transfer-Encoding: chunked') + point,
        400,
        'headers.transfer-encoding',
      ],
      // The route has begun reading these: the body breaks off at its first chunk's size, or
      // after a first chunk of whole points has been read.
      ['a chunk size that is not hex', post('Transfer-Encoding: chunked') + `4g\r\n${point}\r\n0\r\n\r\n`, 400, 'body'],
      [
        'a broken chunk after a good one',
        post('Transfer-Encoding: chunked') + `${chunk(point.repeat(50))}-1\r\n${point}\r\n0\r\n\r\n`,
        400,
        'body',
      ],
      ['HTTP/2 in clear text', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400, 'version'],
      [
        'an expectation besides 100-continue',
        post('Expect: 202-accepted', `Content-Length: ${point.length}`),
        417,
        'headers.expect',
      ],
      ['a proxy tunnel', lines('CONNECT db.internal:5432 HTTP/1.1', 'Host: db.internal:5432'), 405, 'method'],
      [
        'no Host in HTTP/1.1',
        lines('GET /v1/kpis HTTP/1.1', 'Connection: close', `Authorization: Bearer ${analyst}`),
        400,
        'headers.host',
      ],
    ];
    for (const [what, request, status, field] of cases) {
      const r = await raw(request);
      expect(r.status, what).toBe(status);
      expect(r.headers, what).toMatch(/content-type: application\/problem\+json/i);
      const body = JSON.parse(r.body) as { status: number; field: string; detail: string };
      expect(body, what).toMatchObject({ status, field });
      expect(body.detail, what).toMatch(new RegExp(`^${field.replace('.', '\\.')}: \\S`));
    }
    // The broken chunk reached the ingest route, whose body stream then broke off: once the
    // route has heard of it, none of it is logged as the room's error, and nothing landed.
    await expect
      .poll(() => t.logs.slice(logsBefore).join(''), { timeout: 10_000 })
      .toMatch(/the connection closed before/);
    expect(t.logs.slice(logsBefore).join('')).not.toMatch(/unhandled error|"level":50/);
    expect(t.room.duck.snapshots.latest).toBe(before);
    // The room still answers: the point, sent well, lands.
    const ok = await raw(post(`Content-Length: ${point.length}`) + point);
    expect(ok.status).toBe(202);
    expect(t.room.duck.snapshots.latest).toBe(before + 1);
  });
});

describe('bytes that are not HTTP behind a whole request on the same connection', () => {
  it('get their problem after the request before them is answered, in order', async () => {
    const analyst = await t.token('acme', 'analyst');
    const valid = lines('GET /v1/kpis HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${analyst}`);
    for (const garbage of ['GARBAGE\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', '\u0000\u0001\u0002']) {
      const r = await raw(valid + garbage);
      const answers = [...r.headers.concat('\r\n\r\n', r.body).matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      // The valid request's answer first, then the problem for what followed it, then the close.
      expect(answers, JSON.stringify(garbage)).toEqual(['200', '400']);
      expect(r.body, JSON.stringify(garbage)).toContain('"kpis"');
      expect(r.body, JSON.stringify(garbage)).toMatch(/application\/problem\+json[\s\S]*"status":400/i);
    }
    // Behind refused bytes a valid request is not read: one problem, then the close (README).
    const behind = await raw('GARBAGE\r\n\r\n' + valid);
    expect([...(behind.headers + behind.body).matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(['400']);
    // Two valid requests behind each other are both answered, as before.
    const two = await raw(valid + request('GET /healthz HTTP/1.1'));
    expect([...(two.headers + two.body).matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(['200', '200']);
  });
});

describe('a method a path is not served for', () => {
  it('is a 405 naming the method with Allow listing the ones it is served for; an unknown path stays 404', async () => {
    const admin = await t.token('acme', 'admin');
    const cases: [string, string, string][] = [
      ['DELETE', '/v1/kpis', 'GET, HEAD'],
      ['PUT', '/v1/points', 'POST'],
      ['PATCH', '/v1/batches/abc', 'GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['GET', '/v1/agreement/proposals/prp_1/approve', 'POST'],
      ['DELETE', '/v1/tokens', 'GET, HEAD, POST'],
    ];
    for (const [method, path, allow] of cases) {
      const r = await fetch(`${t.url}${path}`, { method, headers: { authorization: `Bearer ${admin}` } });
      expect(r.status, `${method} ${path}`).toBe(405);
      expect(r.headers.get('allow'), path).toBe(allow);
      expect(r.headers.get('content-type'), path).toMatch(/application\/problem\+json/);
      expect(await r.json(), path).toMatchObject({ status: 405, field: 'method' });
    }
    for (const [method, path] of [
      ['GET', '/v1/nowhere'],
      ['POST', '/v1/kpis/lead_time/series/extra'],
    ]) {
      const r = await fetch(`${t.url}${path}`, { method, headers: { authorization: `Bearer ${admin}` } });
      expect(r.status, `${method} ${path}`).toBe(404);
    }
  });
});

describe('a JSON route given another content type or too large a body', () => {
  it('answers 415 naming headers.content-type and 413 naming body; nothing is stored', async () => {
    const admin = await t.token('acme', 'admin');
    const listed = () => tokenCount(admin);
    const before = await listed();
    const send = (type: string, body: string) =>
      fetch(`${t.url}/v1/tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': type },
        body,
      });
    const token = JSON.stringify({ role: 'analyst', name: 'x@acme.example' });
    for (const type of ['application/xml', 'application/x-www-form-urlencoded', `application/${'x'.repeat(500)}`]) {
      const r = await send(type, token);
      expect(r.status, type).toBe(415);
      const p = (await r.json()) as { field: string; detail: string };
      expect(p.field, type).toBe('headers.content-type');
      expect(p.detail.length, type).toBeLessThan(200);
    }
    const big = await send('application/json', JSON.stringify({ role: 'analyst', name: 'x'.repeat(1_100_000) }));
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ status: 413, field: 'body' });
    expect(await listed()).toBe(before);
  });
});

describe('strings a JSON body may write but the control plane cannot store', () => {
  it('NUL or half a surrogate pair anywhere in a JSON body is a 400 naming where; a token name refuses control characters; nothing is stored', async () => {
    const admin = await t.token('acme', 'admin');
    const issue = (raw: string) =>
      fetch(`${t.url}/v1/tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: raw,
      });
    const listed = () => tokenCount(admin);
    const before = await listed();
    for (const [raw, field] of [
      ['{"role":"analyst","name":"a\\u0000b"}', 'body.name'],
      ['{"role":"analyst","name":"x\\ud800y"}', 'body.name'],
      ['{"role":"analyst","name":"x\\udc00"}', 'body.name'],
      ['{"role":"analyst","name":"ok","expiresAt":"\\u0000"}', 'body.expiresAt'],
      ['{"role":"analyst","name":"ok","n\\u0000":1}', 'body.(field)'],
      ['{"role":"analyst","name":"\\u001b[2Jroot@acme.example"}', 'body.name'],
      ['{"role":"analyst","name":"a\\nFAKE LOG LINE"}', 'body.name'],
      ['{"role":"analyst","name":"a\\u0085b"}', 'body.name'],
    ] as const) {
      const r = await issue(raw);
      expect(r.status, raw).toBe(400);
      expect(r.headers.get('content-type'), raw).toMatch(/application\/problem\+json/);
      expect(((await r.json()) as { field: string }).field, raw).toBe(field);
    }
    expect(await listed()).toBe(before);
    // A whole surrogate pair is a character like any other.
    const ok = await issue('{"role":"analyst","name":"ana \\ud83d\\ude00 @acme.example"}');
    expect(ok.status).toBe(201);
    expect(await listed()).toBe(before + 1);
  });

  it('any other control character but tab and line breaks, C1 included, is a 400 on every JSON route; tabs and line breaks are text', async () => {
    const analyst = await t.token('acme', 'analyst');
    const annotate = (text: string) =>
      fetch(`${t.url}/v1/kpis/lead_time/annotations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${analyst}`, 'content-type': 'application/json' },
        body: JSON.stringify({ from: '2026-11-02', text }),
      });
    const count = async () =>
      (
        (await (
          await fetch(`${t.url}/v1/kpis/lead_time/annotations`, { headers: { authorization: `Bearer ${analyst}` } })
        ).json()) as { annotations: unknown[] }
      ).annotations.length;
    const before = await count();
    // ESC, BEL, backspace, form feed, DEL; C1's CSI, NEL and the string terminator.
    for (const c of ['\u001b', '\u0007', '\u0008', '\u000c', '\u007f', '\u009b', '\u0085', '\u009c']) {
      const r = await annotate(`late trucks${c}[31m at the hub`);
      expect(r.status, JSON.stringify(c)).toBe(400);
      expect(await r.json(), JSON.stringify(c)).toMatchObject({ field: 'body.text' });
    }
    expect(await count()).toBe(before);
    const ok = await annotate('late trucks\n\tat the hub\r\n(one line more)');
    expect(ok.status).toBe(201);
    expect(await count()).toBe(before + 1);
  });
});

/**
 * Sends a request line, its headers and only part of the body it announces, and resolves with
 * the status of the first answer; the socket then closes. A room that waited for the rest of the
 * body would answer nothing before `within` ms.
 */
function answerToStalledBody(head: string, part: string, within = 15_000): Promise<{ status: number; body: string }> {
  const { port } = new URL(t.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(head + part));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${within} ms: the room waited for the body`));
    }, within);
    let data = '';
    socket.setEncoding('latin1');
    socket.on('error', reject);
    socket.on('data', (d: string) => {
      data += d;
      const end = data.indexOf('\r\n\r\n');
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(data)?.[1] ?? NaN);
      if (end < 0 || data.length < end + 4 + length) return;
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0), body: data.slice(end + 4) });
    });
  });
}

describe('a request without a valid credential', () => {
  it('is refused with 401 from its headers alone, before its body is read, on JSON and ingest routes alike', async () => {
    const before = t.room.duck.snapshots.latest;
    const expired = 'p_' + 'x'.repeat(40);
    const routes: [string, string][] = [
      ['POST /v1/agreement/proposals HTTP/1.1', 'application/json'],
      ['POST /v1/tokens HTTP/1.1', 'application/json'],
      ['POST /v1/points HTTP/1.1', 'application/x-ndjson'],
    ];
    for (const [line, type] of routes)
      for (const credential of [[], [`Authorization: Bearer ${expired}`], ['Authorization: Basic eDp5']]) {
        // A megabyte announced, a few bytes sent: the answer must not wait for the rest.
        const head = lines(line, 'Host: 127.0.0.1', `Content-Type: ${type}`, 'Content-Length: 1000000', ...credential);
        const r = await answerToStalledBody(head, '{"title":');
        expect(r.status, `${line} ${credential.join('')}`).toBe(401);
        expect(JSON.parse(r.body), line).toMatchObject({ status: 401 });
      }
    // A stranger's malformed body is not its business: 401, not a 400 about the body.
    const r = await fetch(`${t.url}/v1/agreement/proposals`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"title":',
    });
    expect(r.status).toBe(401);
    expect(t.room.duck.snapshots.latest).toBe(before);
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });
});

describe('a JSON body that does not arrive', () => {
  it('is a 408 naming body once PARITY_BODY_SECONDS pass after the headers; nothing is stored; a slow but timely one lands', async () => {
    const admin = await t.token('acme', 'admin');
    const listed = () => tokenCount(admin);
    const before = await listed();
    const head = (...framing: string[]) =>
      lines(
        'POST /v1/tokens HTTP/1.1',
        'Host: 127.0.0.1',
        `Authorization: Bearer ${admin}`,
        'Content-Type: application/json',
        ...framing,
      );
    for (const [framing, part] of [
      ['Content-Length: 1000', '{"role":'],
      ['Transfer-Encoding: chunked', '8\r\n{"role":\r\n'],
      ['Content-Length: 50', ''],
    ] as const) {
      const r = await answerToStalledBody(head(framing), part);
      expect(r.status, framing).toBe(408);
      expect(JSON.parse(r.body), framing).toMatchObject({ status: 408, field: 'body' });
    }
    expect(await listed()).toBe(before);
    // Within the time, however it is cut up, the body is read as before.
    const { port } = new URL(t.url);
    const body = JSON.stringify({ role: 'analyst', name: 'slow@acme.example' });
    const status = await new Promise<number>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(head(`Content-Length: ${body.length}`, 'Connection: close') + body.slice(0, 10));
        setTimeout(() => socket.write(body.slice(10)), 800);
      });
      let data = '';
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => (data += d));
      socket.on('error', reject);
      socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
    });
    expect(status).toBe(201);
    expect(await listed()).toBe(before + 1);
    expect(t.logs.join('')).not.toMatch(/"level":50/);
  });
});
