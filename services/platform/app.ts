import { randomUUID } from 'node:crypto';
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import { alertRoutes, startAlerts, stopAlerts } from '../alerts/alert-routes.js';
import { auditRoutes } from '../governance/audit-routes.js';
import { governanceRoutes } from '../governance/governance-routes.js';
import { scheduleRetention } from '../governance/retention.js';
import { tokenRoutes } from '../governance/token-routes.js';
import { createLander, ingestRoutes } from '../ingest/ingest-routes.js';
import { queryRoutes } from '../query/query-routes.js';
import { startRollups, stopRollups } from '../query/rollups.js';
import { installErrorHandler } from './errors.js';
import { webRoutes } from './web-routes.js';
import { healthRoutes } from './health-routes.js';
import { loggerOptions } from './logger.js';
import type { Room } from './room.js';

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
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 10_000,
    bodyLimit: 1024 * 1024,
    return503OnClosing: true,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandler(app);
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

  const lander = createLander(room);
  await app.register(healthRoutes, { room });
  await app.register(governanceRoutes, { room });
  await app.register(tokenRoutes, { room });
  await app.register(auditRoutes, { room });
  await app.register(ingestRoutes, { room, lander });
  await app.register(queryRoutes, { room });
  await app.register(alertRoutes, { room });
  await app.register(webRoutes, { room });
  // Rollups, evaluation and delivery run in this process beside the routes; they stop before the
  // room's databases close, whoever closes it.
  if (room.config.rollups) startRollups(room.duck, () => room.agreement().agreement, app.log);
  await startAlerts(room, app.log);
  scheduleRetention(room, room.config.retentionEveryMs, app.log);
  room.beforeClose(async () => {
    await stopAlerts(room);
    await stopRollups(room.duck);
  });
  return app;
}
