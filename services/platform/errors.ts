import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';

/** One field-level complaint inside a problem document. */
export const fieldErrorSchema = z.object({
  row: z.number().int().optional().describe('1-based row: JSON array index + 1, NDJSON/CSV line, Arrow row'),
  field: z.string(),
  message: z.string(),
});

/** The body of every error response: RFC 9457 problem details, with the field at fault. */
export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    field: z.string().optional(),
    errors: z.array(fieldErrorSchema).optional(),
  })
  .loose()
  .describe('RFC 9457 problem details');

/**
 * The problem responses of a route, one schema per status code (the route adds its own 2xx):
 * `{ 200: mySchema, ...problemResponses(400, 401, 403, 413, 415) }`; 500 is always there.
 */
export function problemResponses(...codes: number[]): Record<number, typeof problemSchema> {
  return Object.fromEntries([...codes, 500].map((c) => [c, problemSchema]));
}

/** One field-level complaint inside a problem document. */
export type FieldError = z.infer<typeof fieldErrorSchema>;

/** An RFC 9457 problem; thrown anywhere, rendered by the one error handler. */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail?: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail ?? title);
  }
  body(instance?: string): Record<string, unknown> {
    return {
      type: `https://parity.dev/problems/${this.title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`,
      title: this.title,
      status: this.status,
      ...(this.detail ? { detail: this.detail } : {}),
      ...(instance ? { instance } : {}),
      ...this.extra,
    };
  }
}

export const badRequest = (detail: string, field?: string, errors?: FieldError[]) =>
  new Problem(400, 'Bad Request', detail, { ...(field ? { field } : {}), ...(errors ? { errors } : {}) });
export const unauthorized = () =>
  new Problem(401, 'Unauthorized', 'a valid bearer token is required', {}, { 'www-authenticate': 'Bearer' });
export const forbidden = (detail = 'this token may not do that', field?: string) =>
  new Problem(403, 'Forbidden', detail, field ? { field } : {});
export const notFound = (detail = 'not found') => new Problem(404, 'Not Found', detail);
export const conflict = (detail: string) => new Problem(409, 'Conflict', detail);

/** The one error handler: problem+json for every error; 5xx details stay in the log. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | Problem, req: FastifyRequest, reply: FastifyReply) => {
    let problem: Problem;
    if (err instanceof Problem) {
      problem = err;
    } else if (hasZodFastifySchemaValidationErrors(err)) {
      const errors = err.validation.flatMap((v) => {
        const at = `${err.validationContext ?? 'request'}${v.instancePath && v.instancePath !== '/' ? v.instancePath.replaceAll('/', '.') : ''}`;
        // An unknown key (strict objects) is named like any other field: querystring.foo.
        const keys = v.keyword === 'unrecognized_keys' ? (v.params as { keys?: unknown }).keys : undefined;
        if (Array.isArray(keys) && keys.length)
          return keys.map((k) => ({ field: `${at}.${String(k).slice(0, 60)}`, message: 'unknown key' }));
        return [{ field: at, message: v.message ?? 'invalid' }];
      });
      problem = badRequest(errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors[0]?.field, errors);
    } else if ((err as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      problem = new Problem(413, 'Content Too Large', 'body: the request body is larger than the limit of 1 MiB', {
        field: 'body',
      });
    } else if ((err as FastifyError).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      problem = new Problem(
        415,
        'Unsupported Media Type',
        `headers.content-type: ${JSON.stringify((req.headers['content-type'] ?? '').slice(0, 80))} is not accepted here; send application/json`,
        { field: 'headers.content-type' },
      );
    } else if ((err as FastifyError).code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      problem = badRequest('the request body is empty', 'body');
    } else if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' && err.message === 'aborted' && req.raw.destroyed) {
      // The client went away (or its body broke off, answerClientError) before the request was
      // read: nobody is left to answer, and nothing of it was acted on. Not the room's error.
      req.log.info('the connection closed before the request was read');
      problem = badRequest('body: the connection closed before the body arrived', 'body');
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
      const fe = err as FastifyError;
      // Fastify's own 4xx (malformed JSON and the like) carry safe, short messages.
      // Content-type parsing failed: the body is at fault.
      problem = new Problem(
        fe.statusCode!,
        fe.statusCode === 400 ? 'Bad Request' : 'Request Error',
        fe.message.split('\n')[0],
        fe.code?.startsWith('FST_ERR_CTP') || fe.name === 'SyntaxError' ? { field: 'body' } : {},
      );
    } else if (err instanceof Error && err.message.startsWith('Out of Memory Error')) {
      // DuckDB's pool is full for now (other reads, a batch, a rollup refresh): nothing of the
      // request was acted on (a read, or a write that rolled back); it can be asked again.
      req.log.warn({ err }, 'DuckDB ran out of memory for the request');
      problem = new Problem(
        503,
        'Service Unavailable',
        'the room is short of memory for this request just now (PARITY_DUCKDB_MEMORY); retry shortly',
        {},
        { 'retry-after': '5' },
      );
    } else {
      req.log.error({ err }, 'unhandled error');
      problem = new Problem(
        500,
        'Internal Server Error',
        'the room could not complete the request; see the server log with this request id',
        { requestId: req.id },
      );
    }
    // A 5xx the room raised as a problem is logged here; any other error was logged above.
    if (problem.status >= 500 && err instanceof Problem) req.log.error({ err }, problem.title);
    // A body refused before it was read to the end (413 mid-stream, a parse error, auth) leaves
    // unread bytes on the connection: close it rather than keep a socket the next request cannot use.
    if (!req.raw.complete) void reply.header('connection', 'close');
    void reply
      .code(problem.status)
      .headers(problem.headers)
      .type('application/problem+json')
      .send(problem.body(req.url.split('?')[0]));
  });
  // Every route's path as a pattern, so that a path served under other methods answers 405 with
  // Allow (RFC 9110 §15.5.6) rather than 404. Wildcard routes are left out: they are no answer
  // to which methods a path has.
  const routes: { methods: string[]; pattern: RegExp }[] = [];
  app.addHook('onRoute', (r) => {
    if (r.url.includes('*')) return;
    const segments = r.url.split('/').map((seg) => (seg.startsWith(':') ? '[^/]+' : escapeRegExp(seg)));
    routes.push({ methods: [r.method].flat(), pattern: new RegExp(`^${segments.join('/')}$`) });
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => r.methods))].sort();
    if (allowed.length && !allowed.includes(req.method)) {
      const problem = new Problem(
        405,
        'Method Not Allowed',
        `method: ${path.slice(0, 200)} is served for ${allowed.join(', ')}, not ${req.method}`,
        { field: 'method' },
        { allow: allowed.join(', ') },
      );
      void reply.code(405).headers(problem.headers).type('application/problem+json').send(problem.body(path));
      return;
    }
    void reply
      .code(404)
      .type('application/problem+json')
      .send(notFound(`no route ${req.method} ${path}`).body());
  });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
