import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import YAML from 'yaml';
import { demoAgreementFile } from '../../services/platform/paths.js';
import { timeout } from './timeouts.js';

/** The demo agreement with lead_time's owners given webhooks on a local receiver (/acme, /globex). */
export function agreementWithHooks(receiver: HookReceiver): string {
  const doc = YAML.parse(readFileSync(demoAgreementFile(), 'utf8')) as {
    kpis: { id: string; owners: Record<string, { webhook?: string }> }[];
  };
  const lead = doc.kpis.find((k) => k.id === 'lead_time')!;
  lead.owners['acme']!.webhook = receiver.url('/acme');
  lead.owners['globex']!.webhook = receiver.url('/globex');
  const file = join(mkdtempSync(join(tmpdir(), 'parity-agreement-')), 'agreement.json');
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

export interface ReceivedHook {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/**
 * A partner's webhook endpoint: a real HTTP server on a local port. `mode` decides the answer:
 * ok (204), fail (503), gone (410), hang (never answers until released), slow (answers after
 * `slowMs`). Every request is recorded; `delivered` holds only the ones answered 2xx.
 */
export class HookReceiver {
  readonly received: ReceivedHook[] = [];
  readonly delivered: ReceivedHook[] = [];
  mode: 'ok' | 'fail' | 'gone' | 'hang' | 'slow' = 'ok';
  slowMs = 20_000;
  #server: Server;
  #hanging: (() => void)[] = [];
  #waiters: (() => void)[] = [];
  port = 0;

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const hook = {
          path: req.url ?? '/',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          at: Date.now(),
        };
        this.received.push(hook);
        const answer = (status: number) => {
          if (res.destroyed) return;
          res.statusCode = status;
          res.end();
          if (status < 300) this.delivered.push(hook);
          for (const w of this.#waiters.splice(0)) w();
        };
        if (this.mode === 'ok') answer(204);
        else if (this.mode === 'fail') answer(503);
        else if (this.mode === 'gone') answer(410);
        else if (this.mode === 'slow') setTimeout(() => answer(204), this.slowMs).unref();
        else {
          this.#hanging.push(() => answer(204));
          for (const w of this.#waiters.splice(0)) w();
        }
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Waits until `pred` holds over what arrived (checked on each arrival), or fails after `ms`. */
  async waitFor(pred: () => boolean, ms = 10_000): Promise<void> {
    ms = timeout(ms);
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline)
        throw new Error(
          `webhook receiver: condition not met within ${ms} ms (${this.received.length} received, ${this.delivered.length} delivered)`,
        );
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 50).unref();
      });
    }
  }

  releaseHanging(): void {
    for (const f of this.#hanging.splice(0)) f();
  }

  /** Forgets held requests without answering (their sender is gone). */
  dropHanging(): void {
    this.#hanging.length = 0;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

/** A real SMTP server on a local port; every message is parsed with mailparser. */
export class MailCatcher {
  readonly messages: ParsedMail[] = [];
  port = 0;
  #server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData: (stream, _session, cb) => {
      simpleParser(stream)
        .then((m) => {
          this.messages.push(m);
          cb();
        })
        .catch(cb);
    },
  });

  async start(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  async waitFor(pred: () => boolean, ms = 10_000): Promise<void> {
    ms = timeout(ms);
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline)
        throw new Error(`mail catcher: condition not met within ${ms} ms (${this.messages.length} messages)`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}
