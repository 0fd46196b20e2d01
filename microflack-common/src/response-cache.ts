// Whole GET answers kept in memory, known to be current without asking the database
// (docs/ARCHITECTURE.md, "Answers from memory"). An instance keeps the bytes of an answer while
// - no write has been made to its database since, by this instance (every write query of its
//   knex is seen) or by another instance of the service (each publishes "changed" on a Redis
//   channel after a write; every instance subscribes);
// - its subscription is known to work: it hears its own heartbeat, published every
//   HEARTBEAT_MS, within HEARTBEAT_LOST_MS. Otherwise (Redis down, a partition, a demoted
//   primary) nothing is answered from memory and every request is validated as before;
// - and the answer is younger than maxAgeMs, which bounds what nothing above can see (a writer
//   outside the services, such as an operator's SQL, or a "changed" lost on its way).
// An answer built while a write was going on is not kept: each answer is built under a ticket,
// the generation it started in, and kept only if the generation is still that.
// Every answer a route gives through it carries a strong ETag (a hash of its bytes) and
// `Cache-Control: private, no-cache`: browsers and clients ask again with If-None-Match and get
// 304 without a body when nothing changed.
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Request, RequestHandler, Response } from 'express';
import type { Knex } from './db.js';
import { LRUCache } from 'lru-cache';
import type { Redis } from 'ioredis';
import { createRedis } from './events.js';
import { logger } from './log.js';
import { withTimeout } from './retry.js';
import { counter, routeOf } from './metrics.js';
import { z } from 'zod';

const log = logger.child({ module: 'response-cache' });

export const HEARTBEAT_MS = 250;
export const HEARTBEAT_LOST_MS = 1000;
/** Default longest life of a kept answer. */
export const DEFAULT_ANSWER_MAX_AGE_MS = 500;
/**
 * The longest a request waits for the same answer being built by another, before building it. Past
 * a second on purpose: a build can take that long (a search matching most of 270,000 messages took
 * MariaDB about 1 s alone), and every waiter building its own at once exhausts the database pool.
 * The builder's own work is bounded by the database's timeouts (a connection within 3 s).
 */
const BUILD_WAIT_MS = 5000;
/** Default bound on the bytes of kept answers per instance. */
export const DEFAULT_ANSWER_CACHE_BYTES = 32 * 1024 * 1024;

const answers = counter(
  'answers_from_memory_total',
  'GET answers by where they came from: memory (kept and current) or built',
  ['source'],
);

/** The settings of a service that keeps answers (users, messages): spread into its config. */
export const answerCacheConfig = {
  // Bytes of whole answers each instance keeps (least recently used go first).
  ANSWER_CACHE_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .max(2 ** 31)
    .default(DEFAULT_ANSWER_CACHE_BYTES),
  // The longest a kept answer is given: bounds what no "changed" tells (a writer outside the
  // services); 0 answers nothing from memory.
  ANSWER_CACHE_MAX_AGE_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(10000)
    .default(DEFAULT_ANSWER_MAX_AGE_MS),
};

export interface KeptAnswer {
  body: Buffer;
  contentType: string;
  etag: string;
}

interface Entry extends KeptAnswer {
  generation: number;
  at: number;
  /** The answer's headers as the route gave them (but those of the connection and length). */
  headers: OutgoingHttpHeaders;
  /** The route, for the metrics and the log of an answer given in front of the app. */
  route: string;
}

/**
 * Who asks, read from the request as it arrives (before the app): a name for the caller, the same
 * for every request the app would answer alike (`anonymous`, `user 5`), or null when only the app
 * can tell (a token it must check, a request with side effects such as marking its user seen).
 */
export type Identify = (req: IncomingMessage) => string | null;

// Headers of the exchange, not of the answer: never replayed.
const NOT_REPLAYED = new Set([
  'connection',
  'keep-alive',
  'date',
  'content-length',
  'transfer-encoding',
]);

export interface ResponseCacheOptions {
  /** The service whose instances share the "changed" channel. */
  service: string;
  /** REDIS (host:port or sentinel://...); without it nothing is answered from memory. */
  redis?: string;
  maxBytes?: number;
  maxAgeMs?: number;
  /**
   * Lets `front` answer requests before the app: kept answers are found again by URL and caller.
   * Without it, only the app's routes answer from memory.
   */
  identify?: Identify;
}

export interface ResponseCache {
  /**
   * Express middleware for a GET route: answers from memory when it can, else lets the route
   * build the answer and keeps it. `scope(req)` names who may share an answer: the same string
   * for every caller of a public answer, the caller's id where the answer depends on who asks.
   */
  keep(scope: (req: Request) => string): RequestHandler;
  /** A write was made here: everything kept goes, and the other instances are told. */
  changed(): void;
  /** Sees every write query of this knex (call once per database). */
  watch(db: Knex): void;
  /**
   * For requestListener (service.ts): answers a GET from memory before express runs, when the
   * same URL was kept for the same caller (`identify`); else false and the app answers.
   */
  front(req: IncomingMessage, res: ServerResponse): string | false;
  /** Whether answers may be given from memory now. */
  readonly serving: boolean;
  /** Bumped by every write told of and every silence heard: what was kept before is not given. */
  readonly generation: number;
  readonly entries: number;
  readonly bytes: number;
  close(): Promise<void>;
}

// Statements that change nothing: anything else run through knex counts as a write.
const READ_ONLY = /^\s*(select|show|explain|describe|pragma\s+\w+\s*$|with\s)/i;

/** A strong ETag of the bytes. */
export function etagOf(body: Buffer): string {
  return `"${createHash('sha1').update(body).digest('base64url')}"`;
}

/**
 * Whether If-None-Match names this ETag (weak comparison, RFC 9110 13.1.2), or is `*`. Evaluated
 * whatever the request's Cache-Control says: `no-cache` there is for caches on the way (fetch()
 * sends it with every If-None-Match), not for the origin (express's req.fresh answers it 200).
 */
export function notModified(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  return ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === opaque);
}

/** Answers that must not be kept (the route learnt something was missing): res.locals flag. */
export function doNotKeep(res: Response): void {
  res.locals.doNotKeep = true;
}

export function createResponseCache(opts: ResponseCacheOptions): ResponseCache {
  const maxAgeMs = opts.maxAgeMs ?? DEFAULT_ANSWER_MAX_AGE_MS;
  const channel = `microflack:changed:${opts.service}`;
  const me = randomUUID();
  const kept = new LRUCache<string, Entry>({
    maxSize: opts.maxBytes ?? DEFAULT_ANSWER_CACHE_BYTES,
    sizeCalculation: (e) => Math.max(1, e.body.length),
  });
  // `<url>\0<caller>` → the key the route kept its answer under (front). Bounded; an index whose
  // answer went is dropped when found.
  const fronts = new LRUCache<string, string>({ max: 10000 });
  let generation = 0;
  let heardAt = 0;
  let closed = false;
  let pub: Redis | undefined;
  let sub: Redis | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let pendingPublish = false;

  const bump = () => {
    generation++;
  };
  const healthy = () => sub !== undefined && Date.now() - heardAt < HEARTBEAT_LOST_MS;

  if (opts.redis) {
    pub = createRedis(opts.redis, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
    sub = createRedis(opts.redis, { maxRetriesPerRequest: null });
    sub.on('message', (_channel: string, message: string) => {
      const [from, kind] = message.split(' ');
      if (from === me) {
        if (kind !== 'heartbeat') return;
        // Heard again after a silence: whatever was kept before may have missed a change.
        if (Date.now() - heardAt >= HEARTBEAT_LOST_MS) bump();
        heardAt = Date.now();
        return;
      }
      if (kind === 'changed') bump();
    });
    // Every (re)connection subscribes again; until the first heartbeat comes back, nothing is
    // answered from memory.
    sub.on('ready', () => {
      sub?.subscribe(channel).catch((err: Error) => log.warn({ err: err.message }, 'subscribe'));
    });
    sub.on('close', bump);
    heartbeat = setInterval(() => {
      pub?.publish(channel, `${me} heartbeat`).catch(() => undefined);
    }, HEARTBEAT_MS);
    heartbeat.unref();
  }

  function publishChanged(): void {
    if (!pub || pendingPublish) return;
    // Writes of one tick are told once.
    pendingPublish = true;
    setImmediate(() => {
      pendingPublish = false;
      pub?.publish(channel, `${me} changed`).catch((err: Error) => {
        // The others cannot be told: they see the silence only through maxAgeMs. Our own
        // heartbeat goes the same way, so we stop answering from memory too.
        log.debug({ err: err.message }, 'change not published');
      });
    });
  }

  function changed(): void {
    bump();
    // clear() walks the whole capacity: only when there is something to drop (writes come often).
    if (kept.size > 0) kept.clear();
    if (fronts.size > 0) fronts.clear();
    publishChanged();
  }

  function get(key: string): Entry | undefined {
    const e = kept.get(key);
    if (!e) return undefined;
    if (e.generation !== generation || Date.now() - e.at >= maxAgeMs || !healthy()) {
      kept.delete(key);
      return undefined;
    }
    return e;
  }

  function send(
    req: Request,
    res: Response,
    answer: KeptAnswer,
    sendBody: (body: Buffer) => unknown,
  ): void {
    res.set('ETag', answer.etag);
    if (notModified(req.get('If-None-Match'), answer.etag)) {
      res.status(304).end();
      return;
    }
    res.set('Content-Type', answer.contentType);
    sendBody(answer.body);
  }

  // Answers being built, by key: requests for the same answer meanwhile wait for it rather than
  // all building it at once (when a kept answer ages out under load, every connection misses).
  interface Build {
    generation: number;
    done: Promise<void>;
    /** Releases the waiters (once the answer is sent, and kept if it could be). */
    settle(): void;
  }
  const building = new Map<string, Build>();

  /** This request as the one building `key` in this generation, if none is and answers are kept. */
  function startBuild(key: string): Build | undefined {
    if (building.get(key)?.generation === generation || !healthy()) return undefined;
    let finish = () => {};
    const build: Build = {
      generation,
      done: new Promise<void>((resolve) => (finish = resolve)),
      settle: () => {
        if (building.get(key) === build) building.delete(key);
        finish();
      },
    };
    building.set(key, build);
    return build;
  }

  /**
   * The answer kept under `key`, waiting while another request builds it in this generation, for
   * at most BUILD_WAIT_MS in all; else this request is to build it (`ticket`: the generation it
   * builds in), and is the one others wait for when it can be kept. A build that ends without
   * keeping its answer (a write came while it ran) hands over: the first waiter to resume becomes
   * the builder at once (before the others resume) and the others wait for it, so a slow answer is
   * never built by every waiting request at once.
   */
  async function keptOrBuilt(
    key: string,
  ): Promise<{ hit: Entry } | { hit?: undefined; ticket: number; build?: Build }> {
    const deadline = Date.now() + BUILD_WAIT_MS;
    for (;;) {
      const hit = get(key);
      if (hit) return { hit };
      const pending = building.get(key);
      const left = deadline - Date.now();
      if (!pending || pending.generation !== generation || left <= 0) {
        return { ticket: generation, build: startBuild(key) };
      }
      // Out of time is no error: the loop sees the deadline passed and builds.
      await withTimeout(pending.done, left).catch(() => undefined);
    }
  }

  const keep =
    (scope: (req: Request) => string): RequestHandler =>
    async (req, res, next) => {
      res.set('Cache-Control', 'private, no-cache');
      if (req.method !== 'GET') return next();
      const key = `${req.originalUrl}\u0000${scope(req)}`;
      const found = await keptOrBuilt(key);
      if (found.hit) {
        answers.inc({ source: 'memory' });
        send(req, res, found.hit, (b) => res.send(b));
        return;
      }
      answers.inc({ source: 'built' });
      const { ticket, build } = found;
      // Done when its answer is sent (kept or not). A client that leaves does not stop the route:
      // it still builds and sends (into the closed socket), and what it keeps is there for the
      // waiters, who were released at once before and all built the answer again (a broad search,
      // 1 s each, exhausted the database pool every time a load generator stopped). A response
      // that ended without res.send releases them when it closes; a route that never ends one,
      // BUILD_WAIT_MS after its client left.
      const settle = build?.settle ?? (() => {});
      if (build) {
        res.once('close', () => {
          if (res.writableEnded) settle();
          else setTimeout(settle, BUILD_WAIT_MS).unref();
        });
      }
      const original = res.send.bind(res);
      res.send = (body?: unknown) => {
        res.send = original;
        // Waiters resume once this has run: whatever it keeps is kept by then.
        setImmediate(settle);
        const bytes =
          typeof body === 'string' ? Buffer.from(body) : Buffer.isBuffer(body) ? body : undefined;
        if (res.statusCode !== 200 || !bytes) return original(body);
        let contentType = String(res.get('Content-Type') ?? 'application/json');
        if (typeof body === 'string' && !/charset=/i.test(contentType))
          contentType += '; charset=utf-8';
        const answer: KeptAnswer = { body: bytes, contentType, etag: etagOf(bytes) };
        const keeping = ticket === generation && healthy() && !res.locals.doNotKeep;
        send(req, res, answer, original);
        if (keeping) {
          const headers: OutgoingHttpHeaders = {};
          for (const [name, value] of Object.entries(res.getHeaders())) {
            if (!NOT_REPLAYED.has(name) && value !== undefined) headers[name] = value;
          }
          headers['content-type'] = contentType;
          headers.etag = answer.etag;
          kept.set(key, { ...answer, generation, at: Date.now(), headers, route: routeOf(req) });
          const caller = opts.identify?.(req);
          if (caller != null) fronts.set(`${req.originalUrl}\0${caller}`, key);
        }
        return res;
      };
      next();
    };

  function front(req: IncomingMessage, res: ServerResponse): string | false {
    if (req.method !== 'GET' || !opts.identify || fronts.size === 0) return false;
    const caller = opts.identify(req);
    if (caller === null) return false;
    const index = `${req.url}\0${caller}`;
    const key = fronts.get(index);
    if (key === undefined) return false;
    const hit = get(key);
    if (!hit) {
      fronts.delete(index);
      return false;
    }
    answers.inc({ source: 'memory' });
    for (const [name, value] of Object.entries(hit.headers)) {
      if (value !== undefined) res.setHeader(name, value);
    }
    if (notModified(req.headers['if-none-match'], hit.etag)) {
      res.removeHeader('content-type');
      res.statusCode = 304;
      res.end();
    } else {
      res.statusCode = 200;
      res.setHeader('content-length', hit.body.length);
      res.end(hit.body);
    }
    return hit.route;
  }

  function watch(db: Knex): void {
    const isWrite = (q: { method?: string; sql?: string }) =>
      q.method !== 'select' && q.method !== 'first' && !READ_ONLY.test(q.sql ?? '');
    // Before the statement (an answer built meanwhile is not kept) and after it (one built from
    // what was read before it committed is not either); the others are told after it.
    db.on('query', (q: { method?: string; sql?: string }) => {
      if (isWrite(q)) bump();
    });
    const after = (_r: unknown, q: { method?: string; sql?: string }) => {
      if (isWrite(q)) changed();
    };
    db.on('query-response', after);
    db.on('query-error', (_e: unknown, q: { method?: string; sql?: string }) => {
      if (isWrite(q)) changed();
    });
    // A transaction's COMMIT has no query-response: its statements were told of before they were
    // committed, so an answer read in between could be kept. Told again once it has settled.
    const transaction = db.transaction.bind(db);
    Object.defineProperty(db, 'transaction', {
      configurable: true,
      value: (...args: Parameters<Knex['transaction']>) => {
        const settled = transaction(...args);
        // knex answers a thenable (not a native Promise).
        if (typeof (settled as PromiseLike<unknown> | undefined)?.then === 'function') {
          Promise.resolve(settled).then(changed, changed);
        }
        return settled;
      },
    });
  }

  return {
    keep,
    changed,
    watch,
    front,
    get serving() {
      return healthy();
    },
    get generation() {
      return generation;
    },
    get entries() {
      return kept.size;
    },
    get bytes() {
      return kept.calculatedSize;
    },
    async close() {
      if (closed) return;
      closed = true;
      if (heartbeat) clearInterval(heartbeat);
      pub?.disconnect();
      sub?.disconnect();
    },
  };
}
