// Issue #13, bounded parsers: the Arrow framing check passes a valid stream or file through
// byte for byte, however it is cut into chunks, and refuses a declared length over its limit
// with a 400 naming the message — before any reader allocates for it.
import { Dictionary, Float64, Int32, Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
import { Footer as FbFooter } from 'apache-arrow/fb/footer';
import { Message as FbMessage } from 'apache-arrow/fb/message';
import { MessageHeader } from 'apache-arrow/fb/message-header';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { ByteBuffer } from 'flatbuffers';
import { describe, expect, it } from 'vitest';
import { ARROW_LIMITS, checkedArrowFraming } from '../../services/ingest/arrow-framing.js';
import { Problem } from '../../services/platform/errors.js';

const table = new Table({
  kpi: vectorFromArray(['lead_time', 'lead_time', 'lead_time'], new Utf8()),
  value: vectorFromArray([1, 2, 3], new Float64()),
});

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield Buffer.from(bytes.subarray(i, i + size));
}

async function pass(bytes: Uint8Array, size: number, limits = ARROW_LIMITS): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of checkedArrowFraming(chunked(bytes, size), limits)) out.push(c);
  return Buffer.concat(out);
}

describe('Arrow framing', () => {
  it('passes a valid stream and file through unchanged, whatever the chunking', async () => {
    for (const format of ['stream', 'file'] as const) {
      const bytes = tableToIPC(table, format);
      for (const size of [1, 3, 7, 64, bytes.length])
        expect(Buffer.compare(await pass(bytes, size), Buffer.from(bytes)), `${format} by ${size}`).toBe(0);
    }
  });

  it('refuses a message declaring more metadata or body than the limits allow, naming the message', async () => {
    const bytes = Buffer.from(tableToIPC(table, 'stream'));
    const refused = async (b: Uint8Array, limits = ARROW_LIMITS) => {
      const err = await pass(b, 5, limits).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Problem);
      return err as Problem;
    };
    const hostile = Buffer.from(bytes);
    hostile.writeInt32LE(0x7ffffff0, 4); // the schema message's metadata length
    expect((await refused(hostile)).detail).toMatch(/^Arrow message 1: declares \d+ bytes of metadata/);
    const negative = Buffer.from(bytes);
    negative.writeInt32LE(-8, 4);
    expect((await refused(negative)).extra).toMatchObject({ field: 'body' });
    // The record batch's body (message 2) over a small limit.
    const small = { ...ARROW_LIMITS, maxMessageBody: 16 };
    expect((await refused(bytes, small)).detail).toMatch(/^Arrow message 2: declares a body of \d+ bytes/);
  });

  it('refuses a batch whose metadata declares more columns than it could hold, before decoding them', async () => {
    // Found by the parser fuzz: one byte turned a record batch's 2 field nodes into 2.7 million,
    // which the reader decoded one object each (300 MB and seconds for a 3 KB body).
    const bytes = Buffer.from(tableToIPC(table, 'stream'));
    // The record batch's metadata follows the schema message: find the word holding its node count.
    const nodeCount = (b: Buffer, at: number, len: number) => {
      try {
        const m = FbMessage.getRootAsMessage(new ByteBuffer(new Uint8Array(b.buffer, b.byteOffset + at, len)));
        if (m.headerType() !== MessageHeader.RecordBatch) return undefined;
        return (m.header(new FbRecordBatch()) as FbRecordBatch | null)?.nodesLength();
      } catch {
        return undefined;
      }
    };
    let hostile: Buffer | undefined;
    for (let at = 0; at + 8 < bytes.length && !hostile; at++) {
      if (bytes.readUInt32LE(at) !== 0xffffffff) continue; // continuation marker, then the metadata length
      const len = bytes.readInt32LE(at + 4);
      if (nodeCount(bytes, at + 8, len) !== 2) continue;
      for (let w = at + 8; w + 4 <= at + 8 + len && !hostile; w += 4) {
        if (bytes.readUInt32LE(w) !== 2) continue;
        const b = Buffer.from(bytes);
        b.writeUInt32LE(0x00ffffff, w);
        if (nodeCount(b, at + 8, len) === 0x00ffffff) hostile = b;
      }
    }
    expect(hostile, 'the node count was found').toBeDefined();
    const err = (await pass(hostile!, 11).catch((e: unknown) => e)) as Problem;
    expect(err).toBeInstanceOf(Problem);
    expect(err.status).toBe(400);
    expect(err.detail).toMatch(/declares 16777215 columns in \d+ bytes of metadata/);
  });
});

describe('Arrow framing: message kinds and a file footer', () => {
  const dictTable = new Table({
    kpi: vectorFromArray(['lead_time', 'lead_time', 'error_rate'], new Dictionary(new Utf8(), new Int32())),
    value: vectorFromArray([1, 2, 3], new Float64()),
  });
  /** The message starts of an Arrow stream (after a file's 8-byte magic): offset, metadata length, header type, body length. */
  const messages = (b: Buffer, from: number) => {
    const out: { at: number; len: number; type: MessageHeader; body: number }[] = [];
    for (let at = from; at + 8 <= b.length;) {
      const off = b.readUInt32LE(at) === 0xffffffff ? 4 : 0;
      const len = b.readInt32LE(at + off);
      if (len <= 0) break;
      const m = FbMessage.getRootAsMessage(new ByteBuffer(new Uint8Array(b.buffer, b.byteOffset + at + off + 4, len)));
      const body = Number(m.bodyLength());
      out.push({ at, len: off + 4 + len, type: m.headerType(), body });
      at += off + 4 + len + body;
    }
    return out;
  };
  const refusal = async (b: Uint8Array) => {
    const err = await pass(b, 7).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Problem);
    expect((err as Problem).status).toBe(400);
    expect((err as Problem).extra).toMatchObject({ field: 'body' });
    return (err as Problem).detail;
  };

  it('passes streams and files with dictionaries, however cut', async () => {
    for (const format of ['stream', 'file'] as const) {
      const bytes = tableToIPC(dictTable, format);
      for (const size of [1, 5, 64, bytes.length])
        expect(Buffer.compare(await pass(bytes, size), Buffer.from(bytes)), `${format} by ${size}`).toBe(0);
    }
  });

  it('refuses a message of a kind no stream holds: a corrupted header type, in a stream or a file', async () => {
    // A hostile client's fuzz: one byte of a file's first message (its flatbuffer root) made it a
    // message of no kind the reader knows, and apache-arrow's file reader read it again for good.
    for (const format of ['stream', 'file'] as const) {
      const bytes = Buffer.from(tableToIPC(table, format));
      const first = messages(bytes, format === 'file' ? 8 : 0).find((m) => m.type === MessageHeader.RecordBatch)!;
      let refused = 0;
      for (let byte = first.at + 8; byte < first.at + 12; byte++)
        for (const v of [0x00, 0x17, 0xe7, 0xff]) {
          const b = Buffer.from(bytes);
          if (b[byte] === v) continue;
          b[byte] = v;
          const out = await pass(b, 13).catch((e: unknown) => e);
          // Any change here either still frames a record batch of the same lengths, or is a 400.
          if (out instanceof Problem) refused++;
          else
            expect(
              messages(b, format === 'file' ? 8 : 0).some(
                (m) => m.at === first.at && m.type === MessageHeader.RecordBatch,
              ),
            ).toBe(true);
        }
      expect(refused, format).toBeGreaterThan(0);
    }
  });

  it('refuses a batch before the schema, or a second schema, in a stream', async () => {
    const bytes = Buffer.from(tableToIPC(table, 'stream'));
    const [schema, batch] = messages(bytes, 0);
    const slice = (m: { at: number; len: number; body: number }) => bytes.subarray(m.at, m.at + m.len + m.body);
    const eos = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    expect(await refusal(Buffer.concat([slice(batch!), eos]))).toMatch(/^Arrow message 1: comes before the schema/);
    expect(await refusal(Buffer.concat([slice(schema!), slice(schema!), slice(batch!), eos]))).toMatch(
      /^Arrow message 2: is a second schema/,
    );
  });

  it('refuses a file whose footer points a block at another kind of message, or at no message', async () => {
    // The file reader, given a record batch block at a dictionary batch, read that block again and
    // again (the worker spun for good, and the writer it held with it).
    const file = Buffer.from(tableToIPC(dictTable, 'file'));
    const length = file.readInt32LE(file.length - 10);
    const start = file.length - 10 - length;
    const footer = FbFooter.getRootAsFooter(
      new ByteBuffer(new Uint8Array(file.buffer, file.byteOffset + start, length)),
    );
    const batch = footer.recordBatches(0)!;
    const dictionary = footer.dictionaries(0)!;
    /** The file with one block's offset (the struct's first 8 bytes) set to `to`. */
    const moved = (block: typeof batch, to: bigint) => {
      const b = Buffer.from(file);
      b.writeBigInt64LE(to, start + (block as unknown as { bb_pos: number }).bb_pos);
      return b;
    };
    expect(await refusal(moved(batch, dictionary.offset()))).toMatch(/footer points its record batch 1 at byte/);
    expect(await refusal(moved(dictionary, batch.offset()))).toMatch(/footer points its dictionary batch 1 at byte/);
    expect(await refusal(moved(batch, batch.offset() + 2n))).toMatch(/footer points its record batch 1/);
    // A footer length that is not the file's.
    const long = Buffer.from(file);
    long.writeInt32LE(file.length, file.length - 10);
    expect(await refusal(long)).toMatch(/footer declares \d+ bytes/);
  });
});

describe('Arrow framing: files of many batches', () => {
  it('passes a file whose footer lists more blocks than a megabyte holds (45,000 one-row batches)', async () => {
    // A reviewer's find: the footer was capped at the metadata limit, 43,690 blocks; the same
    // rows as a stream passed. The cap now grows with the messages the file holds.
    const n = 45_000;
    const one = new Table({
      kpi: vectorFromArray(
        Array.from({ length: n }, () => 'lead_time'),
        new Utf8(),
      ),
      value: vectorFromArray(
        Array.from({ length: n }, (_, i) => i),
        new Float64(),
      ),
    }).batches[0]!;
    const file = tableToIPC(new Table(Array.from({ length: n }, (_, i) => one.slice(i, i + 1))), 'file');
    const footer = Buffer.from(file).readInt32LE(file.length - 10);
    expect(footer).toBeGreaterThan(1 << 20);
    expect(Buffer.compare(await pass(file, 1 << 16), Buffer.from(file))).toBe(0);
    // …and a footer past a block per message is still refused.
    const b = Buffer.from(file);
    const padded = Buffer.concat([b.subarray(0, b.length - 10), Buffer.alloc(2 << 20), b.subarray(b.length - 10)]);
    const err = (await pass(padded, 1 << 16).catch((e: unknown) => e)) as Problem;
    expect(err).toBeInstanceOf(Problem);
    expect(err.detail).toMatch(/the Arrow file's footer is over \d+ bytes/);
  });
});
