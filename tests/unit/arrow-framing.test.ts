// Issue #13, bounded parsers: the Arrow framing check passes a valid stream or file through
// byte for byte, however it is cut into chunks, and refuses a declared length over its limit
// with a 400 naming the message — before any reader allocates for it.
import { Float64, Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
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
