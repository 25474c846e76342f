import { Message } from 'apache-arrow';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import type { Field as FbField } from 'apache-arrow/fb/field';
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
 * them: every message's declared metadata length, body length, and a record batch's row count,
 * field nodes and buffer regions against its body, and the schema's nesting. A hostile length is
 * a 400 naming what was declared — not an allocation that takes the worker down. The bytes pass
 * through unchanged; only message prefixes and metadata are held, never a body.
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
      return;
    }
    let c = chunk;
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, c.length);
      this.#skip -= n;
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
        return;
      }
      if (metaLength < 0 || metaLength > this.limits.maxMetadata)
        throw refuse(`declares ${metaLength} bytes of metadata (at most ${this.limits.maxMetadata})`);
      if (buf.length < off + 4 + metaLength) return;
      const bodyLength = checkMessage(buf.subarray(off + 4, off + 4 + metaLength), this.limits, refuse);
      this.#message++;
      const rest = buf.subarray(off + 4 + metaLength);
      const n = Math.min(bodyLength, rest.length);
      this.#skip = bodyLength - n;
      this.#buf = rest.subarray(n);
      if (this.#skip > 0) return;
    }
  }
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
      // A field is a 4-byte offset to a table at least; children nest at most maxDepth deep.
      const walk = (count: number, child: (i: number) => FbField | null, depth: number) => {
        if (bad) return;
        if (!fits(count, 4)) bad = `declares ${count} fields`;
        else if (depth > limits.maxDepth) bad = `nests its fields deeper than ${limits.maxDepth}`;
        else
          for (let i = 0; i < count && !bad; i++) {
            const f = child(i);
            if (f) walk(f.childrenLength(), (j) => f.children(j), depth + 1);
          }
      };
      if (schema) walk(schema.fieldsLength(), (i) => schema.fields(i), 1);
    }
  } catch {
    bad = 'its metadata cannot be read';
  }
  if (bad) throw refuse(`${bad} in ${meta.length} bytes of metadata`);
}

/** Checks one message's metadata against the limits; returns its body length. */
function checkMessage(meta: Buffer, limits: ArrowLimits, refuse: (what: string) => Error): number {
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
  return bodyLength;
}
