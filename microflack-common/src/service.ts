// Service bootstrap: the express app every service is built on, and the process that runs it.
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { Etcd } from './etcd.js';
import { responseChecksEnabled, type BaseConfig } from './config.js';
import { responseCheck } from './api/check.js';
import type { Operation } from './api/operations.js';
import { errorHandler, HttpError, notFound } from './errors.js';
import { isDbUnavailable } from './db.js';
import { logger, setLogIdentity, setLogLevel } from './log.js';
import { metricsHandler, observeRequest, routeOf } from './metrics.js';
import { register, type RegisteredInstance } from './registry.js';
import { withTimeout } from './retry.js';
import {
  logLevel,
  watchLiveSettings,
  type AnyLiveSetting,
  type LiveSettings,
} from './live-config.js';

const log = logger.child({ module: 'service' });

export const JSON_BODY_LIMIT = '64kb';
// Well under HAProxy's check timeout (its 1 s `inter`): a slow dependency check (Redis or etcd
// away, a ping waiting in a reconnect queue) must not make the whole check time out, or HAProxy
// takes every instance out over a dependency that is not even critical.
const HEALTH_CHECK_TIMEOUT_MS = 400;
const DRAIN_TIMEOUT_MS = 10000;

/** A reachability check; critical ones make /healthz answer 503 (HAProxy then stops routing here). */
export interface HealthCheck {
  check(): Promise<unknown>;
  critical: boolean;
}

export interface ServiceAppOptions {
  health?: Record<string, HealthCheck>;
  /** The API operations the app mounts (from @microflack/common/api), for the response check. */
  operations?: readonly Operation[];
  /** Hold every answer of those operations to its schema; default: under NODE_ENV=test only. */
  checkResponses?: boolean;
  /** Answers given before the app (requestListener), such as a ResponseCache's `front`. */
  front?: FrontAnswer;
}

/** Per-app state the process shares with its app: draining flips /healthz to 503. */
export interface ServiceState {
  draining: boolean;
  inFlight: number;
  front?: FrontAnswer;
}

/** Names the instance that answered, for operators and for tests that check who answered what. */
export const INSTANCE_HEADER = 'X-MicroFlack-Instance';

const states = new WeakMap<Express, ServiceState>();

const requestLog = logger.child({ module: 'http' });

/**
 * Counts a request in flight until it closes, then in the metrics and the request log (health
 * checks and scrapes only in flight). While draining, asks the client not to reuse the connection.
 */
function track(
  state: ServiceState,
  req: IncomingMessage,
  res: ServerResponse,
  route: () => string,
  started = process.hrtime.bigint(),
): void {
  state.inFlight++;
  if (state.draining) res.setHeader('Connection', 'close');
  res.on('close', () => {
    state.inFlight--;
    const r = route();
    if (r === '/healthz' || r === '/metrics') return;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    observeRequest(req.method ?? 'GET', r, res.statusCode, seconds);
    requestLog.info(
      {
        method: req.method,
        path: ((req as { originalUrl?: string }).originalUrl ?? req.url ?? '').split('?')[0],
        route: r,
        status: res.statusCode,
        ms: Math.round(seconds * 1e4) / 10,
      },
      'request',
    );
  });
}

/**
 * Answers a request completely before the app sees it, or says it cannot (false). It answers with
 * the route the app would have named for the metrics and the log.
 */
export type FrontAnswer = (req: IncomingMessage, res: ServerResponse) => string | false;

/**
 * The request listener of an app made by createServiceApp: its `front` (answers from memory,
 * response-cache.ts) first, then the app. What runService listens with; tests listen with it too.
 */
export function requestListener(app: Express): (req: IncomingMessage, res: ServerResponse) => void {
  const state = states.get(app);
  const front = state?.front;
  if (!state || !front) return app;
  return (req, res) => {
    let route: string | false = false;
    const started = process.hrtime.bigint();
    if (!state.draining) {
      try {
        route = front(req, res);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'front answer failed: the app answers');
        route = false;
      }
    }
    if (route === false) {
      app(req, res);
      return;
    }
    const answered = route;
    track(state, req, res, () => answered, started);
  };
}

/** Builds an app with the shared middleware; `mount` adds the service's routes. */
export function createServiceApp(opts: ServiceAppOptions, mount: (app: Express) => void): Express {
  const app = express();
  const state: ServiceState = { draining: false, inFlight: 0, front: opts.front };
  states.set(app, state);
  app.disable('x-powered-by');
  // Exactly one hop, the load balancer: req.ip is the address HAProxy put last in X-Forwarded-For
  // (it drops any the client sent), never one a client wrote there. Instances listen on loopback
  // (HOST) so nothing but the LB and the other services reaches them.
  app.set('trust proxy', 1);
  app.set('etag', false);

  const observe: RequestHandler = (req, res, next) => {
    // The route is read when the head is written: inside a mounted router req.baseUrl is still set.
    let route = 'unmatched';
    const writeHead = res.writeHead;
    res.writeHead = function (this: typeof res, ...args: Parameters<typeof writeHead>) {
      route = routeOf(req);
      return writeHead.apply(this, args);
    } as typeof writeHead;
    track(state, req, res, () => route);
    next();
  };
  app.use(observe);
  // Ahead of everything that answers (body parsing included), so that every answer is checked.
  if (opts.operations && (opts.checkResponses ?? responseChecksEnabled())) {
    app.use(responseCheck(opts.operations));
  }

  app.get('/healthz', async (_req, res) => {
    const results: Record<string, string> = {};
    let ready = !state.draining;
    await Promise.all(
      Object.entries(opts.health ?? {}).map(async ([name, hc]) => {
        try {
          await withTimeout(hc.check(), HEALTH_CHECK_TIMEOUT_MS);
          results[name] = 'ok';
        } catch (err) {
          results[name] = `unreachable: ${(err as Error).message}`.slice(0, 200);
          if (hc.critical) ready = false;
        }
      }),
    );
    res.set('Cache-Control', 'no-store');
    res.status(ready ? 200 : 503).json({
      status: state.draining ? 'draining' : ready ? 'ok' : 'unavailable',
      checks: results,
    });
  });
  app.get('/metrics', metricsHandler);

  app.use(express.json({ limit: JSON_BODY_LIMIT }));
  mount(app);
  app.use(notFound, dbUnavailableHandler, errorHandler);
  return app;
}

// A database that is down or restarting is a brief outage: fail fast with 503 rather than 500.
const dbUnavailableHandler: ErrorRequestHandler = (err, _req, _res, next) => {
  next(
    isDbUnavailable(err)
      ? new HttpError(503, 'service temporarily unavailable', { 'Retry-After': '1' })
      : err,
  );
};

export interface RunServiceOptions {
  name: string;
  config: BaseConfig;
  app: Express;
  etcd: Etcd;
  /** URL prefix registered as `/services/<name>/location`. */
  location: string;
  /**
   * More prefixes this instance serves, each registered as a service of its own (same address,
   * same lease rules) so that the LB routes it here: one location per service in etcd.
   */
  also?: Array<{ name: string; location: string }>;
  backend?: Record<string, string>;
  /** Closed in order after the last request has been answered. */
  close?: Array<() => Promise<unknown> | void>;
  /** Called once the HTTP server exists (socket.io attaches here). */
  onServer?: (server: Server) => void;
  /**
   * The service's live settings (`/config/<service>/<key>` in etcd), besides `log_level` which
   * every service has.
   */
  live?: Record<string, AnyLiveSetting>;
}

export interface RunningService {
  server: Server;
  address: string;
  registration: RegisteredInstance;
  live: LiveSettings;
  shutdown(reason: string): Promise<void>;
}

/** Listens, registers, and on SIGTERM/SIGINT: deregisters, drains, closes, exits. */
export async function runService(opts: RunServiceOptions): Promise<RunningService> {
  const { config, app, name } = opts;
  setLogIdentity(name, config.INSTANCE_NAME, config.LOG_LEVEL);
  const state = states.get(app) ?? { draining: false, inFlight: 0 };
  const server = http.createServer(requestListener(app)).listen(config.PORT, config.HOST);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  server.keepAliveTimeout = 65000; // longer than HAProxy's idle timeout, so HAProxy closes first
  server.headersTimeout = 66000;
  // The whole request, body included (the LB cuts a slow one at 10 s already).
  server.requestTimeout = 15000;
  opts.onServer?.(server);
  // On the server, ahead of every handler (Socket.IO's included), so every answer carries it.
  const identity = `${name}/${config.INSTANCE_NAME}`;
  server.prependListener('request', (_req, res) => res.setHeader(INSTANCE_HEADER, identity));
  const port = (server.address() as AddressInfo).port;
  const address =
    config.SERVICE_URL ?? `${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${port}`;
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const registration = register(opts.etcd, {
    service: name,
    instance: config.INSTANCE_NAME,
    address,
    location: opts.location,
    backend: { balance: config.LB_ALGORITHM, ...opts.backend },
  });
  const extra = (opts.also ?? []).map((a) =>
    register(opts.etcd, {
      service: a.name,
      instance: config.INSTANCE_NAME,
      address,
      location: a.location,
      backend: { balance: config.LB_ALGORITHM, ...opts.backend },
    }),
  );
  log.info({ address, location: opts.location }, 'listening');
  const live = watchLiveSettings(opts.etcd, name, {
    log_level: {
      schema: logLevel,
      apply: (level: string | undefined) => setLogLevel(level ?? config.LOG_LEVEL),
    },
    ...opts.live,
  });

  let stopping: Promise<void> | undefined;
  async function shutdown(reason: string): Promise<void> {
    stopping ??= (async () => {
      log.info({ reason }, 'shutting down');
      state.draining = true;
      await Promise.all([registration, ...extra].map((r) => r.deregister()));
      await live.close();
      // Keep answering while the LB reloads without this instance.
      await new Promise((r) => setTimeout(r, config.SHUTDOWN_GRACE_MS));
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      const deadline = Date.now() + DRAIN_TIMEOUT_MS;
      while (state.inFlight > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        server.closeIdleConnections();
      }
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await withTimeout(closed, 2000).catch(() => undefined);
      for (const close of opts.close ?? []) {
        await withTimeout(Promise.resolve(close()), 3000).catch((err) =>
          log.warn({ err }, 'close failed'),
        );
      }
      opts.etcd.close();
      log.info('stopped');
    })();
    return stopping;
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      shutdown(signal).then(
        () => process.exit(0),
        (err) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
  return { server, address, registration, live, shutdown };
}
