import type { FastifyInstance, FastifyRequest } from 'fastify';
import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { badRequest, Problem } from './errors.js';
import { addressBlocks } from './addresses.js';
import { UNSTORABLE } from './text-rules.js';

/**
 * What every request must be before any route sees it (README, "Bad input"): no control character
 * (NUL and the like) in a path segment, a query key or value, or a header value; no ambiguous
 * header (two Authorization or Content-Type headers); no transfer or content encoding, nor a
 * charset, the room does not decode. Each refusal is a 400 (415 for an encoding or a charset)
 * naming the parameter, decided from the request line and headers alone, before the body is read.
 */
export function installInputHygiene(app: FastifyInstance, opts: { jsonBodyMs: number }): void {
  app.addHook('onRequest', async (req) => {
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400. Node's own refusal has no body,
    // so the server is made without it (app.ts) and the room refuses here, as a problem.
    if (req.raw.httpVersion === '1.1' && req.headers.host === undefined)
      throw badRequest('headers.host: an HTTP/1.1 request must name its Host', 'headers.host');
    checkHeaders(req.raw.rawHeaders);
    checkPath(req);
    checkQuery(req.url);
  });
  // A JSON body (at most 1 MiB) arrives whole within `jsonBodyMs` (PARITY_BODY_SECONDS) of its
  // headers, or the request is a 408: the room buffers such a body until it ends, so a slow or
  // stalled one must not hold that memory for the request timeout (17 minutes). A route reading
  // its body as a stream paces it itself (`config.streamsBody`: ingest, body-pace.ts).
  app.addHook('preParsing', async (req, reply, payload) => {
    if (req.routeOptions.config.streamsBody || !hasBody(req)) return payload;
    const timed = new PassThrough();
    const timer = setTimeout(
      () =>
        timed.destroy(
          new Problem(
            408,
            'Request Timeout',
            `body: it did not arrive within ${opts.jsonBodyMs / 1000} s (PARITY_BODY_SECONDS); nothing of it was acted on`,
            { field: 'body' },
          ),
        ),
      opts.jsonBodyMs,
    );
    const done = () => clearTimeout(timer);
    payload.once('end', done);
    payload.once('close', done);
    // Answered without reading its body (a 415, say): no deadline is left running for it.
    reply.raw.once('close', done);
    // The deadline's error is the parser's to report; once the request is answered nobody reads it.
    timed.on('error', () => undefined);
    payload.once('error', (err) => (done(), timed.destroy(err)));
    return payload.pipe(timed);
  });
  // A request answered before its body was read to the end (a GET or a 405 announcing a body the
  // route never reads): the connection closes with the answer. Kept open, Node would read and drop
  // the rest of a body announced at a gigabyte and sent a byte every few seconds, and a client
  // could hold the room's file handles that way, a red team's finding.
  app.addHook('onSend', async (req, reply) => {
    if (!req.raw.complete) void reply.header('connection', 'close');
  });
  // A JSON body, once parsed: no string PostgreSQL cannot store (NUL, or half a surrogate pair,
  // which JSON's \u escapes can write), and no control character but tab and line breaks (an
  // escape sequence in a note, a title or a name would reach the terminals and pages that show
  // it), whatever the route's schema says of its field.
  app.addHook('preValidation', async (req) => {
    const bad = unstorableString(req.body, 'body', 0);
    if (bad)
      throw badRequest(
        `${bad}: control characters (but tab and line breaks) and unpaired surrogates (\\u0000, \\u001b, \\u009b, \\ud800) are not accepted`,
        bad,
      );
  });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route reads its body as a stream and paces it itself (no whole-body deadline here). */
    streamsBody?: boolean;
  }
}

/** Whether a request announces a body: a Content-Length above 0, or a chunked one. */
function hasBody(req: FastifyRequest): boolean {
  const length = req.headers['content-length'];
  return length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
}

/** The path of the first string in a parsed JSON value holding a character UNSTORABLE refuses. */
function unstorableString(v: unknown, path: string, depth: number): string | undefined {
  if (typeof v === 'string') return UNSTORABLE.test(v) ? path : undefined;
  if (v === null || typeof v !== 'object' || depth > 64) return undefined;
  // Only what a JSON parser makes: an ingest body is a stream, left to its own parsers.
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = unstorableString(v[i], `${path}[${i}]`, depth + 1);
      if (bad) return bad;
    }
  } else if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
    for (const k in v) {
      const name = SAFE_NAME.test(k) ? `${path}.${k}` : `${path}.(field)`;
      if (UNSTORABLE.test(k)) return name;
      const bad = unstorableString((v as Record<string, unknown>)[k], name, depth + 1);
      if (bad) return bad;
    }
  }
  return undefined;
}

// C0 controls and DEL. A header value may hold a tab (RFC 9110 field whitespace); nothing else may.
const CONTROL = /[\u0000-\u001f\u007f]/;
const HEADER_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const SAFE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Headers the room reads one value of: a second one makes the request ambiguous. */
const SINGLE = new Set(['authorization', 'content-type', 'content-length', 'content-encoding', 'transfer-encoding']);

function checkHeaders(raw: readonly string[]): void {
  const seen = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const field = `headers.${SAFE_NAME.test(name) ? name : '(name)'}`;
    if (HEADER_CONTROL.test(value)) throw badRequest(`${field}: control characters are not allowed`, field);
    if (SINGLE.has(name)) {
      if (seen.has(name)) throw badRequest(`${field}: given more than once`, field);
      seen.add(name);
    }
    if (name === 'transfer-encoding' && value.trim().toLowerCase() !== 'chunked')
      throw unsupported(field, 'the only transfer coding accepted is chunked');
    if (name === 'content-encoding' && value.trim().toLowerCase() !== 'identity')
      throw unsupported(field, 'send the body uncompressed (no content coding is accepted)');
    if (name === 'content-type') checkCharset(value, field);
  }
}

/** What the room reads every text body as: UTF-8, of which US-ASCII is a part. */
const READABLE_CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii']);

/**
 * A body declared in another charset (`text/csv; charset=latin1`) would be read as UTF-8 all the
 * same: the same bytes could mean other subjects or values than the sender meant, or be refused
 * as invalid UTF-8 deep in the body. It is refused up front, naming the parameter.
 */
function checkCharset(contentType: string, field: string): void {
  for (const param of contentType.split(';').slice(1)) {
    const eq = param.indexOf('=');
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const charset = param
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
    if (!READABLE_CHARSETS.has(charset))
      throw unsupported(
        field,
        `charset ${JSON.stringify(charset.slice(0, 40))} is not read here; send the body in UTF-8 (charset=utf-8, or none)`,
      );
  }
}

function unsupported(field: string, why: string): Problem {
  return new Problem(415, 'Unsupported Media Type', `${field}: ${why}`, { field });
}

/** Each path segment, decoded as the router decodes it; a route parameter is named as such. */
function checkPath(req: FastifyRequest): void {
  const path = req.url.split('?')[0]!;
  const pattern = (req.routeOptions.url ?? '').split('/');
  path.split('/').forEach((segment, i) => {
    const p = pattern[i];
    const field = p?.startsWith(':') ? `params.${p.slice(1)}` : 'path';
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw badRequest(`${field}: malformed percent-encoding`, field);
    }
    if (CONTROL.test(decoded)) throw badRequest(`${field}: control characters (such as NUL) are not allowed`, field);
  });
}

function checkQuery(url: string): void {
  const q = url.indexOf('?');
  if (q < 0) return;
  for (const [key, value] of new URLSearchParams(url.slice(q + 1))) {
    const field = SAFE_NAME.test(key) ? `querystring.${key}` : 'querystring';
    if (CONTROL.test(key) || CONTROL.test(value))
      throw badRequest(`${field}: control characters (such as NUL) are not allowed`, field);
  }
}

/**
 * The parts of a request Node's HTTP parser (llhttp) names in its error codes. Its `reason` is
 * one of llhttp's own fixed sentences, never the client's bytes, so the problem may quote it.
 */
const PARSER_FIELDS: Readonly<Record<string, string>> = {
  HPE_INVALID_METHOD: 'method',
  HPE_INVALID_URL: 'path',
  HPE_INVALID_VERSION: 'version',
  HPE_INVALID_HEADER_TOKEN: 'headers',
  HPE_INVALID_CONTENT_LENGTH: 'headers.content-length',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'headers.content-length',
  HPE_INVALID_TRANSFER_ENCODING: 'headers.transfer-encoding',
  HPE_INVALID_CHUNK_SIZE: 'body',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'body',
  HPE_INVALID_EOF_STATE: 'body',
};

/**
 * The problem for a request Node refused before any route saw it (Fastify's `clientErrorHandler`):
 * headers too large (431), the request not in time (408), or bytes that are not HTTP/1.1 (400),
 * each naming the part at fault where the parser says which.
 */
function clientErrorProblem(err: { code?: string | undefined; reason?: string | undefined }): Problem {
  if (err.code === 'HPE_PAUSED_H2_UPGRADE')
    return badRequest('version: HTTP/2 is not served in clear text here; send HTTP/1.1', 'version');
  if (err.code === 'HPE_HEADER_OVERFLOW')
    return new Problem(431, 'Request Header Fields Too Large', `headers: larger than ${maxHeaderSize} bytes in all`, {
      field: 'headers',
    });
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return new Problem(408, 'Request Timeout', 'request: it did not arrive in time; nothing of it was acted on', {
      field: 'request',
    });
  const field = PARSER_FIELDS[err.code ?? ''] ?? 'request';
  const why = err.reason ?? 'not valid HTTP/1.1';
  return badRequest(`${field}: ${why}`, field);
}

/**
 * Fastify's `clientErrorHandler`: answers a request the HTTP parser refused with its problem
 * (clientErrorProblem) and closes the connection, as Node would, but in problem+json. Nothing is
 * written once a response on the connection has begun (a body that broke off mid-way under a
 * streamed answer), nor on a connection the client already reset.
 */
/** Connections whose problem waits for the answer in flight (answerClientError). */
const deferred = new WeakSet<Socket>();

export function answerClientError(err: Error & { code?: string; reason?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const current = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  // Bytes that are not HTTP after a whole request (pipelined behind it): that request is answered
  // first, then the problem, as HTTP/1.1 orders responses. Before, the problem went out at once
  // and took the valid request's place.
  if (current && current.req.complete && !current.writableFinished && socket.writable) {
    // Once per connection: Node calls again for every later chunk, and the socket reads no more.
    if (deferred.has(socket)) return;
    deferred.add(socket);
    socket.pause();
    // However long that answer takes (a large batch landing): the request timeout bounds it.
    const problem = clientErrorProblem(err);
    current.once('finish', () => {
      if (socket.writable) endWithProblem(socket, problem);
      else socket.destroy();
    });
    current.once('close', () => {
      if (!current.writableFinished) socket.destroy();
    });
    return;
  }
  if (!socket.writable || current?.headersSent) {
    socket.destroy();
    return;
  }
  endWithProblem(socket, clientErrorProblem(err));
}

/**
 * Writes `problem` as the connection's last response and closes it once written, or after a few
 * seconds if a client that stopped reading never lets it be written.
 */
function endWithProblem(socket: Socket, problem: Problem): void {
  const body = JSON.stringify(problem.body());
  socket.end(
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\n` +
      `Content-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Connection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
  setTimeout(() => socket.destroy(), 5_000).unref();
}

/**
 * The two requests Node answers itself, outside any route, answered as problems instead: an
 * `Expect` other than 100-continue (417, Node's own reply has no body) and CONNECT (405: the room
 * is no proxy; Node would close the connection without a word).
 */
export function answerUnroutedRequests(server: Server): void {
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const problem = new Problem(417, 'Expectation Failed', 'headers.expect: only 100-continue is understood', {
      field: 'headers.expect',
    });
    const body = JSON.stringify(problem.body(req.url?.split('?')[0]));
    res.writeHead(problem.status, {
      'content-type': 'application/problem+json',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    });
    res.end(body);
  });
  server.on('connect', (_req: IncomingMessage, socket: Socket) =>
    endWithProblem(
      socket,
      new Problem(405, 'Method Not Allowed', 'method: CONNECT is not served here', { field: 'method' }),
    ),
  );
}

/**
 * At most `max` connections open at once, and at most `perAddress` from one client address (an
 * IPv4 address or an IPv6 /64: addressBlocks; not behind a trusted proxy, whose address every
 * client shares): past either a new connection is closed at once, before anything is read from
 * it, so one client cannot hold every file handle the room has (a red team held 20,000 with slow
 * requests, and every partner's pushes and reads then failed to connect). Returns a count of the
 * connections refused.
 */
export function limitConnections(
  server: Server,
  opts: { max: number; perAddress: number | null },
): { refused: number } {
  const stats = { refused: 0 };
  server.maxConnections = opts.max;
  server.on('drop', () => void stats.refused++);
  if (opts.perAddress === null) return stats;
  const perAddress = opts.perAddress;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    // An IPv6 client holds a whole /64: counted as one address (a red team filled the room's total
    // from many addresses of one host).
    const address = addressBlocks(socket.remoteAddress ?? '').host;
    const n = (open.get(address) ?? 0) + 1;
    if (n > perAddress) {
      stats.refused++;
      socket.destroy();
      return;
    }
    open.set(address, n);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left > 0) open.set(address, left);
      else open.delete(address);
    });
  });
  return stats;
}
