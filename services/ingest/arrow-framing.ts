import { Message } from 'apache-arrow';
import type { Block as FbBlock } from 'apache-arrow/fb/block';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import type { Field as FbField } from 'apache-arrow/fb/field';
import { Footer as FbFooter } from 'apache-arrow/fb/footer';
import { Message as FbMessage } from 'apache-arrow/fb/message';
import { MessageHeader } from 'apache-arrow/fb/message-header';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { Schema as FbSchema } from 'apache-arrow/fb/schema';
import { ByteBuffer } from 'flatbuffers';
import { badRequest } from '../platform/errors.js';

/** What one Arrow IPC message may declare before the reader allocates for it. */
export interface ArrowLimits {
  /** Flatbuffer metadata of one message (a schema, a batch header): small in any real stream. */
  maxMetadata: number;
  /** The body of one message: one record batch's buffers, held whole by the reader. */
  maxMessageBody: number;
  /** Nesting of a schema's fields (a point's columns are flat). */
  maxDepth: number;
}

export const ARROW_LIMITS: ArrowLimits = { maxMetadata: 1 << 20, maxMessageBody: 256 << 20, maxDepth: 4 };

/**
 * Checks the framing of an Arrow IPC stream (or file) as its bytes pass, before the reader sees
 * them: every message's type (a schema first, then record and dictionary batches), its declared
 * metadata length, body length, and a record batch's row count, field nodes and buffer regions
 * against its body, and the schema's nesting; a file's footer at its end (each block it lists
 * points at a message of its kind). A hostile length is a 400 naming what was declared — not an
 * allocation that takes the worker down — and a hostile type or block a 400 too, not a reader
 * that loops on it for good (apache-arrow's file reader, given a record batch block that points
 * at another kind of message, reads that block again and again: a hostile client found it). The
 * bytes pass through unchanged; only message prefixes, metadata and a file's footer are held,
 * never a body.
 */
export async function* checkedArrowFraming(
  body: AsyncIterable<Buffer>,
  limits: ArrowLimits = ARROW_LIMITS,
): AsyncGenerator<Buffer> {
  const framing = new Framing(limits);
  for await (const chunk of body) {
    framing.push(chunk);
    yield chunk;
  }
  // A file's reader reads its footer once the body has ended: checked before that.
  framing.finish();
}

/**
 * A stream's end-of-stream marker ends the body: the reader would stop there, and a second stream
 * after it would go unread while the receipt counted only the first.
 */
function afterTheEnd(): Error {
  return badRequest(
    "the body goes on after the Arrow stream's end-of-stream marker (send one stream per body)",
    'body',
  );
}

/** The message framing, fed chunk by chunk: holds prefixes and metadata only, skips bodies by count. */
class Framing {
  #buf: Buffer = Buffer.alloc(0);
  #skip = 0;
  #started = false;
  #done = false;
  #file = false;
  #message = 0;
  /** The body offset of #buf's first byte. */
  #pos = 0;
  /** A file's messages, in body order: what its footer's blocks must point at (none kept for a stream). */
  readonly #messages = new MessageIndex();
  /** A file's bytes after its end-of-stream marker: the footer, its length and the magic. */
  readonly #tail: Buffer[] = [];
  #tailLength = 0;
  constructor(readonly limits: ArrowLimits) {}

  push(chunk: Buffer): void {
    this.#scan(chunk);
    // What is left may be a view of the chunk, which goes on downstream (and may be transferred
    // to a worker): keep a copy of the leftover only, once per chunk.
    if (this.#buf.length > 0 && this.#buf.buffer === chunk.buffer) this.#buf = Buffer.from(this.#buf);
  }

  #scan(chunk: Buffer): void {
    if (this.#done) {
      if (!this.#file && chunk.length > 0) throw afterTheEnd();
      this.#keep(chunk);
      return;
    }
    let c = chunk;
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, c.length);
      this.#skip -= n;
      this.#pos += n;
      c = c.subarray(n);
    }
    if (c.length === 0) return;
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, c]) : c;
    while (!this.#done) {
      const buf = this.#buf;
      if (!this.#started) {
        if (buf.length < 8) return;
        // An Arrow file starts with ARROW1 and two bytes of padding; a stream with its first message.
        this.#file = buf.subarray(0, 6).toString('latin1') === 'ARROW1';
        this.#buf = this.#file ? buf.subarray(8) : buf;
        this.#pos = this.#file ? 8 : 0;
        this.#started = true;
        continue;
      }
      if (buf.length < 4) return;
      const off = buf.readUInt32LE(0) === 0xffffffff ? 4 : 0;
      if (buf.length < off + 4) return;
      const metaLength = buf.readInt32LE(off);
      const refuse = (what: string) => badRequest(`Arrow message ${this.#message + 1}: ${what}`, 'body');
      if (metaLength === 0) {
        this.#done = true; // the end-of-stream marker (a file's footer follows)
        if (!this.#file && buf.length > off + 4) throw afterTheEnd();
        this.#keep(buf.subarray(off + 4));
        this.#buf = Buffer.alloc(0);
        return;
      }
      if (metaLength < 0 || metaLength > this.limits.maxMetadata)
        throw refuse(`declares ${metaLength} bytes of metadata (at most ${this.limits.maxMetadata})`);
      if (buf.length < off + 4 + metaLength) return;
      const { bodyLength, type } = checkMessage(buf.subarray(off + 4, off + 4 + metaLength), this.limits, refuse);
      // A stream is a schema, then record and dictionary batches; a file may leave its schema to
      // its footer. Any other message (a tensor, or a type no version defines) is refused.
      if (type === MessageHeader.Schema ? this.#message > 0 : !this.#file && this.#message === 0)
        throw refuse(this.#message > 0 ? 'is a second schema' : 'comes before the schema');
      if (type !== MessageHeader.Schema && type !== MessageHeader.RecordBatch && type !== MessageHeader.DictionaryBatch)
        throw refuse(
          `is a message of type ${MessageHeader[type] ?? type}, not a schema, record batch or dictionary batch`,
        );
      if (this.#file) this.#messages.add(this.#pos, off === 4, type, bodyLength);
      this.#message++;
      const rest = buf.subarray(off + 4 + metaLength);
      const n = Math.min(bodyLength, rest.length);
      this.#skip = bodyLength - n;
      this.#buf = rest.subarray(n);
      this.#pos += off + 4 + metaLength + n;
      if (this.#skip > 0) return;
    }
  }

  /** Holds a file's bytes after its end-of-stream marker, up to a footer's worth. */
  #keep(c: Buffer): void {
    if (c.length === 0) return;
    this.#tailLength += c.length;
    // The footer is a schema (metadata-sized, like a message's) and a 24-byte block per message.
    const most = this.limits.maxMetadata + 24 * this.#messages.size + 16;
    if (this.#tailLength > most)
      throw badRequest(
        `the Arrow file's footer is over ${most} bytes (a schema and a block for each of its ${this.#messages.size} messages)`,
        'body',
      );
    this.#tail.push(Buffer.from(c));
  }

  /**
   * At the body's end: a file's footer read and checked — its schema against the limits, and
   * every record batch and dictionary block pointing at a message of that kind (of the body
   * length it declares) that the framing passed. A file cut short is left to the caller's end
   * check (it names the cut).
   */
  finish(): void {
    if (!this.#file || !this.#done) return;
    const tail = Buffer.concat(this.#tail);
    if (tail.length < 10 || tail.subarray(tail.length - 6).toString('latin1') !== 'ARROW1') return;
    const refuse = (what: string) => badRequest(`the Arrow file's footer ${what}`, 'body');
    const length = tail.readInt32LE(tail.length - 10);
    if (length <= 0 || length > tail.length - 10) throw refuse(`declares ${length} bytes, not what the file holds`);
    const bytes = tail.subarray(tail.length - 10 - length, tail.length - 10);
    let bad: string | undefined;
    try {
      const footer = FbFooter.getRootAsFooter(new ByteBuffer(new Uint8Array(bytes.buffer, bytes.byteOffset, length)));
      const blocks = (n: number, block: (i: number) => FbBlock | null, kind: MessageHeader, what: string) => {
        // A block is a 24-byte struct.
        if (!Number.isSafeInteger(n) || n < 0 || n * 24 > length) return `declares ${n} ${what}es`;
        for (let i = 0; i < n; i++) {
          const b = block(i);
          const at = b ? this.#messages.at(Number(b.offset())) : undefined;
          if (!b || !at || at.type !== kind || at.body !== Number(b.bodyLength()))
            return `points its ${what} ${i + 1} at byte ${b ? b.offset() : '?'}, where no ${what} of that length begins`;
        }
        return undefined;
      };
      const schema = footer.schema();
      bad =
        blocks(
          footer.recordBatchesLength(),
          (i) => footer.recordBatches(i),
          MessageHeader.RecordBatch,
          'record batch',
        ) ??
        blocks(
          footer.dictionariesLength(),
          (i) => footer.dictionaries(i),
          MessageHeader.DictionaryBatch,
          'dictionary batch',
        ) ??
        (schema ? schemaProblem(schema, length, this.limits) : 'holds no schema');
    } catch {
      bad = 'cannot be read';
    }
    if (bad) throw refuse(bad);
  }
}

/**
 * A file's messages by body offset, in the order they pass (offsets only grow): a few typed
 * arrays, 17 bytes a message outside the worker's heap, searched by halves — a file of a million
 * one-row batches is 17 MB beside its own bytes, which its reader holds whole anyway.
 */
class MessageIndex {
  #offsets = new Float64Array(64);
  #bodies = new Float64Array(64);
  /** The header type, and 0x80 when the message began with a continuation marker. */
  #kinds = new Uint8Array(64);
  size = 0;

  add(offset: number, continued: boolean, type: MessageHeader, body: number): void {
    if (this.size === this.#offsets.length) {
      const grow = <T extends Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.#offsets = grow(this.#offsets, (n) => new Float64Array(n));
      this.#bodies = grow(this.#bodies, (n) => new Float64Array(n));
      this.#kinds = grow(this.#kinds, (n) => new Uint8Array(n));
    }
    this.#offsets[this.size] = offset;
    this.#bodies[this.size] = body;
    this.#kinds[this.size] = (type & 0x7f) | (continued ? 0x80 : 0);
    this.size++;
  }

  /** The message a block's offset points at: its start, or 4 past it after a continuation marker. */
  at(offset: number): { type: MessageHeader; body: number } | undefined {
    let lo = 0;
    let hi = this.size - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const start = this.#offsets[mid]!;
      const kind = this.#kinds[mid]!;
      if (offset === start || (offset === start + 4 && kind & 0x80))
        return { type: (kind & 0x7f) as MessageHeader, body: this.#bodies[mid]! };
      if (offset < start) hi = mid - 1;
      else lo = mid + 1;
    }
    return undefined;
  }
}

/**
 * What is wrong with a schema's fields, if anything: more than `size` bytes of flatbuffer could
 * hold (a field is a 4-byte offset to a table at least), or nested deeper than the limit.
 */
function schemaProblem(schema: FbSchema, size: number, limits: ArrowLimits): string | undefined {
  let bad: string | undefined;
  const walk = (count: number, child: (i: number) => FbField | null, depth: number) => {
    if (bad) return;
    if (!Number.isSafeInteger(count) || count < 0 || count * 4 > size) bad = `declares ${count} fields`;
    else if (depth > limits.maxDepth) bad = `nests its fields deeper than ${limits.maxDepth}`;
    else
      for (let i = 0; i < count && !bad; i++) {
        const f = child(i);
        if (f) walk(f.childrenLength(), (j) => f.children(j), depth + 1);
      }
  };
  walk(schema.fieldsLength(), (i) => schema.fields(i), 1);
  return bad;
}

/**
 * The vectors a message's metadata declares, checked on the flatbuffer itself before anything is
 * decoded: a vector of n entries takes at least n × its entry size of the metadata, so a count
 * that does not fit is a hostile length (decoding it would allocate one object per entry).
 */
function checkVectors(meta: Buffer, limits: ArrowLimits, refuse: (what: string) => Error): void {
  const fits = (n: number, size: number) => Number.isSafeInteger(n) && n >= 0 && n * size <= meta.length;
  let bad: string | undefined;
  try {
    const m = FbMessage.getRootAsMessage(new ByteBuffer(new Uint8Array(meta.buffer, meta.byteOffset, meta.length)));
    const type = m.headerType();
    if (type === MessageHeader.RecordBatch || type === MessageHeader.DictionaryBatch) {
      const batch =
        type === MessageHeader.RecordBatch
          ? (m.header(new FbRecordBatch()) as FbRecordBatch | null)
          : (m.header(new FbDictionaryBatch()) as FbDictionaryBatch | null)?.data();
      // A field node and a buffer region are 16-byte structs.
      if (batch && !fits(batch.nodesLength(), 16)) bad = `declares ${batch.nodesLength()} columns`;
      else if (batch && !fits(batch.buffersLength(), 16)) bad = `declares ${batch.buffersLength()} buffers`;
    } else if (type === MessageHeader.Schema) {
      const schema = m.header(new FbSchema()) as FbSchema | null;
      if (schema) bad = schemaProblem(schema, meta.length, limits);
    }
  } catch {
    bad = 'its metadata cannot be read';
  }
  if (bad) throw refuse(`${bad} in ${meta.length} bytes of metadata`);
}

/** Checks one message's metadata against the limits; returns its type and body length. */
function checkMessage(
  meta: Buffer,
  limits: ArrowLimits,
  refuse: (what: string) => Error,
): { type: MessageHeader; bodyLength: number } {
  checkVectors(meta, limits, refuse);
  let m: Message;
  try {
    m = Message.decode(meta);
  } catch {
    throw refuse('its metadata cannot be read');
  }
  const bodyLength = Number(m.bodyLength);
  if (!Number.isSafeInteger(bodyLength) || bodyLength < 0 || bodyLength > limits.maxMessageBody)
    throw refuse(`declares a body of ${m.bodyLength} bytes (at most ${limits.maxMessageBody} per message)`);
  // A schema's field counts and nesting were checked on the flatbuffer (checkVectors).
  if (m.isRecordBatch() || m.isDictionaryBatch()) {
    const batch = m.isRecordBatch() ? m.header() : m.header().data;
    const rows = Number(batch.length);
    // A row takes at least a bit of its body (or a field node says how many rows are null).
    if (!Number.isSafeInteger(rows) || rows < 0 || rows > bodyLength * 8 + (1 << 16))
      throw refuse(`declares ${batch.length} rows for a body of ${bodyLength} bytes`);
    for (const node of batch.nodes)
      if (Number(node.length) > rows || Number(node.length) < 0 || Number(node.nullCount) > Number(node.length))
        throw refuse(`has a column of ${node.length} values in a batch of ${rows} rows`);
    for (const b of batch.buffers)
      if (Number(b.offset) < 0 || Number(b.length) < 0 || Number(b.offset) + Number(b.length) > bodyLength)
        throw refuse(`has a buffer past the end of its ${bodyLength}-byte body`);
  }
  // apache-arrow's own enum of the header types, numbered as the flatbuffer's.
  return { type: m.headerType as number as MessageHeader, bodyLength };
}
