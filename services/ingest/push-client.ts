import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { Readable } from 'node:stream';
import { retryPause } from '../platform/backoff.js';

const typeByExtension: Record<string, string> = {
  '.csv': 'text/csv',
  '.ndjson': 'application/x-ndjson',
  '.jsonl': 'application/x-ndjson',
  '.json': 'application/json',
  '.arrow': 'application/vnd.apache.arrow.stream',
  '.arrows': 'application/vnd.apache.arrow.stream',
};

export function contentTypeForFile(file: string): string | undefined {
  return typeByExtension[extname(file).toLowerCase()];
}

export interface PushOptions {
  url: string;
  token: string;
  file: string;
  contentType?: string;
  idempotencyKey?: string;
  partial?: boolean;
  maxAttempts?: number;
  onProgress?: (sent: number, total: number) => void;
  onRetry?: (attempt: number, reason: string, delayMs: number) => void;
  sleep?: (ms: number) => Promise<void>;
}

export type PushOutcome =
  | { ok: true; status: number; receipt: Record<string, unknown>; attempts: number; idempotencyKey: string }
  | {
      ok: false;
      status: number | null;
      problem: Record<string, unknown> | null;
      message: string;
      attempts: number;
      idempotencyKey: string;
    };

/** SHA-256 of the file: the default Idempotency-Key, so pushing the same file twice lands it once. */
export async function fileKey(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return `push-${basename(file)
    .replace(/[^\x21-\x7e]/g, '_')
    .slice(0, 80)}-${h.digest('hex').slice(0, 32)}`;
}

const retryable = new Set([429, 502, 503, 504]);

/**
 * Streams a file to POST /v1/points; retries 429/503 and network errors with the same
 * Idempotency-Key (honouring Retry-After), so a retry never lands the batch twice.
 */
export async function pushFile(opts: PushOptions): Promise<PushOutcome> {
  const contentType = opts.contentType ?? contentTypeForFile(opts.file);
  const key = opts.idempotencyKey ?? (await fileKey(opts.file));
  if (!contentType)
    return {
      ok: false,
      status: null,
      problem: null,
      message: `cannot tell the content type of ${opts.file}; name it .csv, .ndjson, .json or .arrow, or pass --type`,
      attempts: 0,
      idempotencyKey: key,
    };
  const total = statSync(opts.file).size;
  const maxAttempts = opts.maxAttempts ?? 8;
  const sleep = opts.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const endpoint = new URL(`/v1/points${opts.partial ? '?partial=true' : ''}`, opts.url);
  let lastMessage = '';
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let sent = 0;
    const stream = createReadStream(opts.file, { highWaterMark: 1 << 20 });
    stream.on('data', (chunk) => {
      sent += chunk.length;
      opts.onProgress?.(sent, total);
    });
    let res: Response;
    try {
      res = await fetch(endpoint, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${opts.token}`,
          'content-type': contentType,
          'idempotency-key': key,
          'content-length': String(total),
        },
        body: Readable.toWeb(stream) as ReadableStream,
        duplex: 'half',
      } as RequestInit);
    } catch (err) {
      stream.destroy();
      lastMessage = `network error: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`;
      if (attempt === maxAttempts) break;
      const delay = backoff(attempt);
      opts.onRetry?.(attempt, lastMessage, delay);
      await sleep(delay);
      continue;
    }
    const text = await res.text();
    let body: Record<string, unknown> | null;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = null;
    }
    if (res.ok) return { ok: true, status: res.status, receipt: body ?? {}, attempts: attempt, idempotencyKey: key };
    lastMessage = `${res.status} ${String(body?.['title'] ?? res.statusText)}: ${String(body?.['detail'] ?? text.slice(0, 200))}`;
    if (!retryable.has(res.status) || attempt === maxAttempts)
      return {
        ok: false,
        status: res.status,
        problem: body,
        message: lastMessage,
        attempts: attempt,
        idempotencyKey: key,
      };
    const retryAfter = Number(res.headers.get('retry-after'));
    const delay =
      Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 60_000) : backoff(attempt);
    opts.onRetry?.(attempt, lastMessage, delay);
    await sleep(delay);
  }
  return { ok: false, status: null, problem: null, message: lastMessage, attempts: maxAttempts, idempotencyKey: key };
}

/** Half a second after the first failure, doubling up to 30 s. */
const backoff = (attempt: number): number => retryPause(attempt, { firstMs: 500, maxMs: 30_000 });
