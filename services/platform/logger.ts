import type { LoggerOptions } from 'pino';

/**
 * Paths pino blanks in every log line. Subjects never reach the logger in the first place
 * (they are pseudonymised while parsing), but tokens travel in headers and a careless
 * `log.info({ point })` must not leak one either.
 */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["idempotency-key"]',
  'headers.authorization',
  'headers.cookie',
  'authorization',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'subject',
  '*.subject',
  'point.subject',
  'points[*].subject',
  'password',
  '*.password',
];

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: { paths: redactPaths, censor: '[redacted]' },
    serializers: {
      // Query strings may carry anything a client typed; the path is enough to trace a call.
      req: (req: { id: string; method: string; url: string; headers: Record<string, unknown> }) => ({
        id: req.id,
        method: req.method,
        path: String(req.url).split('?')[0],
        contentType: req.headers['content-type'],
        contentLength: req.headers['content-length'],
      }),
    },
  };
}
