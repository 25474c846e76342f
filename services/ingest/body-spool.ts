import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { Problem } from '../platform/errors.js';

/** Bytes handed to the disk and not yet written: past this, reading the body waits for the disk. */
const WRITE_BEHIND = 8 * 1024 * 1024;

/**
 * A request body read once and kept on disk as it is read, so that a batch that gave its writer up
 * (its client went quiet while another batch waited) can land later from the first byte, and so
 * that a batch waiting for a writer holds its body on disk, not in memory. Past `maxBody` bytes
 * reading throws `tooLarge()`; every other error of the body (a 408 for a slow client, a broken
 * connection) passes through.
 *
 * The body holds raw subjects, which must reach no file (DESIGN.md, invariant 3). On disk it is
 * AES-256-CTR ciphertext under a key made for this body alone and held only in this object's
 * memory: the file is noise to anyone who reads it, before its deletion or after a crash (when
 * the room deletes it at start anyway).
 */
export class SpooledBody {
  readonly #it: AsyncIterator<Buffer>;
  #pending: Promise<IteratorResult<Buffer>> | undefined;
  #writes: Promise<unknown> = Promise.resolve();
  #behind = 0;
  #total = 0;
  #ended = false;
  readonly #key = randomBytes(32);
  readonly #iv = randomBytes(16);
  readonly #cipher: ReturnType<typeof createCipheriv>;

  private constructor(
    body: AsyncIterable<Buffer>,
    private readonly file: FileHandle,
    readonly path: string,
    private readonly maxBody: number,
    private readonly tooLarge: () => Error,
  ) {
    this.#it = body[Symbol.asyncIterator]();
    this.#cipher = createCipheriv('aes-256-ctr', this.#key, this.#iv);
    // A write that failed is reported by the next read or by rest(); until then it is not unhandled.
    this.#writes.catch(() => undefined);
  }

  static async open(
    body: AsyncIterable<Buffer>,
    path: string,
    maxBody: number,
    tooLarge: () => Error,
  ): Promise<SpooledBody> {
    return new SpooledBody(body, await open(path, 'wx'), path, maxBody, tooLarge);
  }

  /**
   * Called with each chunk's size before it goes to disk; it may throw to stop reading (a
   * partner's spool budget). Set by the owner as the body changes hands.
   */
  onBytes: (bytes: number) => void = () => undefined;

  /** Bytes read so far. */
  get bytes(): number {
    return this.#total;
  }

  /** Milliseconds spent waiting for the client's next chunk, all told. */
  get waitedMs(): number {
    return this.#waited;
  }
  #waited = 0;

  /**
   * The next chunk (also on its way to the disk), undefined at the end, or 'idle' when `idleMs`
   * passed without one; the read stays pending for the next call, so no byte is lost.
   */
  async next(idleMs?: number): Promise<Buffer | undefined | 'idle'> {
    if (this.#ended) return undefined;
    if (this.#behind > WRITE_BEHIND) await this.#writes;
    this.#pending ??= this.#it.next();
    let next: IteratorResult<Buffer> | 'idle';
    const t0 = performance.now();
    if (idleMs === undefined) next = await this.#pending;
    else {
      let timer: NodeJS.Timeout | undefined;
      next = await Promise.race([
        this.#pending,
        new Promise<'idle'>((r) => (timer = setTimeout(() => r('idle'), idleMs))),
      ]);
      clearTimeout(timer);
    }
    this.#waited += performance.now() - t0;
    if (next === 'idle') return 'idle';
    this.#pending = undefined;
    if (next.done) {
      this.#ended = true;
      await this.#writes;
      return undefined;
    }
    const chunk = next.value;
    this.#total += chunk.length;
    if (this.#total > this.maxBody) throw this.tooLarge();
    this.onBytes(chunk.length);
    const size = chunk.length;
    this.#behind += size;
    // CTR: as many bytes out as in, at once (no block is held back). Only the ciphertext waits.
    const sealed = this.#cipher.update(chunk);
    this.#writes = this.#writes.then(async () => {
      try {
        for (let at = 0; at < sealed.length;) at += (await this.file.write(sealed, at)).bytesWritten;
      } catch (err) {
        // The room's disk, not the client's body: a full disk is a 503 to retry, and says so.
        const code = (err as NodeJS.ErrnoException).code ?? 'an I/O error';
        throw new Problem(
          503,
          'Service Unavailable',
          `the room could not keep the body on disk (${code}); nothing landed, retry later`,
          {},
          { 'retry-after': '30' },
        );
      }
      this.#behind -= size;
    });
    this.#writes.catch(() => undefined);
    return chunk;
  }

  /** Reads what is left of the body to disk. */
  async rest(): Promise<void> {
    while ((await this.next()) !== undefined);
  }

  /** The whole body from disk, deciphered, once `rest()` (or reading to the end) is done. */
  replay(): AsyncIterable<Buffer> {
    if (!this.#ended) throw new Error('the body is not read to its end');
    const decipher = createDecipheriv('aes-256-ctr', this.#key, this.#iv);
    const path = this.path;
    // The file is opened when the replay is first read, so one never read holds no handle.
    return (async function* () {
      for await (const sealed of createReadStream(path, { highWaterMark: 256 * 1024 }))
        yield decipher.update(sealed as Buffer);
    })();
  }

  /** Closes and deletes the file; a read still pending is left to the connection's end. */
  async close(): Promise<void> {
    await this.#writes.catch(() => undefined);
    await this.file.close().catch(() => undefined);
    await rm(this.path, { force: true });
    this.#key.fill(0);
  }
}
