import { randomUUID } from 'node:crypto';
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { ZodType } from 'zod';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import { alertRoutes, createAlerts, type Alerts } from '../services/alerts/alert-routes.js';
import { installAuthentication } from '../services/governance/auth.js';
import { auditRoutes } from '../services/governance/audit-routes.js';
import { governanceRoutes } from '../services/governance/governance-routes.js';
import { scheduleRetention } from '../services/governance/retention.js';
import { tokenRoutes } from '../services/governance/token-routes.js';
import type { BatchLander } from '../services/ingest/batch-lander.js';
import { createLander, ingestRoutes } from '../services/ingest/ingest-routes.js';
import { queryRoutes } from '../services/query/query-routes.js';
import { goalRoutes } from '../services/goals/goal-routes.js';
import { reviewRoutes } from '../services/reviews/review-routes.js';
import { feedbackRoutes, retrospectiveRoutes } from '../services/feedback/feedback-routes.js';
import { noticeOverdueActions } from '../services/feedback/retrospectives.js';
import { drillRoutes } from '../services/alerts/drill-routes.js';
import { escalateDueDrills } from '../services/alerts/drills.js';
import { steeringRoutes } from '../services/steering/steering-routes.js';
import { identityRoutes } from '../services/governance/identity-routes.js';
import { loadOidcProviders, OidcSignIn } from '../services/governance/oidc.js';
import { sendDueReview } from '../services/reviews/review-sender.js';
import { noticeGoals } from '../services/goals/goal-notices.js';
import { startRollups, stopRollups } from '../services/query/rollups.js';
import { SeriesReader } from '../services/query/series-reader.js';
import { badRequest, installErrorHandler } from '../services/platform/errors.js';
import {
  answerClientError,
  answerUnroutedRequests,
  limitConnections,
  installInputHygiene,
} from '../services/platform/input-hygiene.js';
import { webRoutes } from './web-routes.js';
import { healthRoutes } from './health-routes.js';
import { loggerOptions } from '../services/platform/logger.js';
import type { Room } from '../services/platform/room.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The query layer's read path: aggregate cache and rollups. */
    reader: SeriesReader;
    /** The one lander of the app's ingest routes. */
    lander: BatchLander;
    /** Band evaluation and notification delivery; undefined when PARITY_ALERTS=off. */
    alerts: Alerts | undefined;
    /** Connections refused past PARITY_MAX_CONNECTIONS or PARITY_MAX_CONNECTIONS_PER_ADDRESS. */
    connections: { refused: number };
  }
}

export interface BuildAppOptions {
  /** A pino destination (tests capture the log lines); stdout by default. */
  logStream?: NodeJS.WritableStream;
}

/** The room as one Fastify app: platform plugins first, then each service's routes. */
export async function buildApp(room: Room, opts: BuildAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logStream
      ? { ...loggerOptions(room.config.logLevel), stream: opts.logStream }
      : loggerOptions(room.config.logLevel),
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,64}$/.test(given) ? given : randomUUID();
    },
    // A backstop behind the ingest pace (body-pace.ts), which cuts a slow upload off first with a
    // problem; headers must arrive within Node's headersTimeout (60 s).
    requestTimeout: room.config.ingestPace.maxMs + 120_000,
    connectionTimeout: 0,
    keepAliveTimeout: 10_000,
    bodyLimit: 1024 * 1024,
    // Past Fastify's 100, an id too long for its route reaches the route's schema, which names it
    // (`params.id`); past this, the router refuses it first (frameworkErrors: `path`).
    routerOptions: { maxParamLength: 1000 },
    // Behind the proxies PARITY_TRUST_PROXY names, the client's address (sign-in flows per
    // address, logs, audit entries) is the one they forward, not theirs.
    ...(room.config.trustProxy.length > 0 ? { trustProxy: room.config.trustProxy } : {}),
    return503OnClosing: true,
    // Requests the HTTP parser refuses, and HTTP/1.1 ones without Host, are answered as problems
    // like every other bad input (input-hygiene.ts), not with Node's or Fastify's own bodies.
    // Node checks headersTimeout (60 s) only every connectionsCheckingInterval (30 s by default),
    // so slow headers were cut off after up to 90 s; every 5 s keeps the promise within 65.
    http: { requireHostHeader: false, connectionsCheckingInterval: 5_000 },
    clientErrorHandler: answerClientError,
    // A URL the router cannot decode (malformed percent-encoding) is a problem like any other.
    frameworkErrors: (err, _req, res) => {
      const detail =
        err.code === 'FST_ERR_BAD_URL'
          ? 'path: malformed percent-encoding'
          : err.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? 'path: a path parameter is longer than 1000 characters'
            : undefined;
      // Typed for the route-less request it is; it is a reply like any other.
      void (res as unknown as FastifyReply)
        .code(400)
        .type('application/problem+json')
        .send(badRequest(detail ?? 'the request is malformed', detail ? 'path' : undefined).body());
    },
  });
  // A POST without a body reaches the validator as null: a route whose body is optional takes it
  // as absent (the CLI sends none to ack, approve, rotate, mark done), one that needs a body
  // still answers 400 naming `body`.
  app.setValidatorCompiler<ZodType>((route) => {
    const validate = validatorCompiler(route);
    return route.httpPart === 'body' ? (data) => validate(data ?? undefined) : validate;
  });
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandler(app);
  installInputHygiene(app, { jsonBodyMs: room.config.jsonBodyMs });
  answerUnroutedRequests(app.server);
  app.decorate('connections', limitConnections(app.server, room.config.connections));
  // Cookies for every route: the dashboard's session cookie authenticates like a bearer token.
  await app.register(cookie);
  // A partner's intranet page (PARITY_EMBED_ORIGINS) may read with a bearer token: GET only,
  // no cookies (the session cookie stays SameSite=Strict), nothing for any other origin.
  if (room.config.embedOrigins.length) {
    const allowed = new Set(room.config.embedOrigins);
    await app.register(cors, {
      origin: (origin, cb) => cb(null, origin !== undefined && allowed.has(origin)),
      methods: ['GET', 'HEAD'],
      allowedHeaders: ['authorization', 'accept'],
      exposedHeaders: ['x-parity-snapshot', 'x-parity-digest', 'x-parity-agreement-version'],
      credentials: false,
      maxAge: 600,
    });
  }
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Parity clean room',
        version: '1',
        description: 'Partners push metric points; the room serves only the agreed aggregates.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    transform: jsonSchemaTransform,
    // Schemas registered with an id (the recursive JsonValue) become components that routes refer to.
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // The services' shared workers, one each per app, reachable as decorators (tests and the
  // metrics read them); started when the app is ready, stopped when it closes. Whoever opened the
  // room closes it after app.close() has resolved (serve, the tests), never in an onClose hook:
  // Fastify runs the root's onClose hooks before its plugins', so the store would close first.
  room.duck.onReleaseError((err, snapshot) =>
    app.log.error(
      { err, snapshot },
      'release: step failed at every attempt; its atoms stay pending until a later batch of the KPI',
    ),
  );
  const reader = new SeriesReader(room.duck, {
    cache: room.config.queryCache,
    cacheCells: room.config.queryCacheCells,
    pointReads: room.config.pointReads,
    pointReadsWaiting: room.config.pointReadsWaiting,
  });
  const lander = createLander(room);
  const alerts = room.config.alerts ? createAlerts(room, reader, app.log) : undefined;
  alerts?.engine.watch((ctx, kpis) => noticeGoals(room, ctx, kpis));
  // The scheduled evaluation also tells each overdue action's owner, once.
  alerts?.engine.watch((_ctx, kpis) => (kpis === null ? noticeOverdueActions(room) : Promise.resolve(0)));
  // … and escalates the drills nobody acknowledged in time.
  alerts?.engine.watch((_ctx, kpis) => (kpis === null ? escalateDueDrills(room) : Promise.resolve(0)));
  // The scheduled evaluation (every KPI) also sends last month's review once its day has come.
  if (room.config.reviewSend)
    alerts?.engine.watch((_ctx, kpis) => (kpis === null ? sendDueReview(room, reader) : Promise.resolve(0)));
  app.decorate('reader', reader);
  app.decorate('lander', lander);
  app.decorate('alerts', alerts);
  room.onAgreement(() => reader.rollups?.loop.request());
  await app.register(async (workers) => {
    let stopRetention = () => Promise.resolve();
    workers.addHook('onReady', async () => {
      if (room.config.rollups) startRollups(reader, () => room.agreement().agreement, app.log);
      await alerts?.start();
      stopRetention = scheduleRetention(room, room.config.retentionEveryMs, app.log);
    });
    workers.addHook('onClose', async () => {
      await stopRetention();
      await alerts?.stop();
      await stopRollups(reader);
    });
  });

  installAuthentication(app, room);
  await app.register(healthRoutes, { room });
  await app.register(governanceRoutes, { room });
  await app.register(tokenRoutes, { room });
  await app.register(auditRoutes, { room, gate: reader.gate });
  await app.register(ingestRoutes, { room, lander });
  await app.register(queryRoutes, { room, reader });
  await app.register(goalRoutes, { room, reader });
  await app.register(reviewRoutes, { room, reader, kick: () => alerts?.notifier.kick() });
  await app.register(feedbackRoutes, { room, kick: () => alerts?.notifier.kick() });
  await app.register(retrospectiveRoutes, { room });
  await app.register(alertRoutes, { room, alerts });
  await app.register(drillRoutes, { room, kick: () => alerts?.notifier.kick() });
  await app.register(steeringRoutes, { room });
  // The partners' identity providers, read once at start (a bad file stops the start, saying where).
  const oidc = room.config.oidcFile
    ? new OidcSignIn(loadOidcProviders(room.config.oidcFile, room.agreement().agreement))
    : undefined;
  await app.register(identityRoutes, { room, oidc });
  await app.register(webRoutes, { room });
  return app;
}
