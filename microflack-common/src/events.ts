// `updated_model` events to every browser, published to Redis with the Socket.IO emitter.
import { Emitter } from '@socket.io/redis-emitter';
import { Redis, type RedisOptions } from 'ioredis';
import { REDIS_SENTINEL_PATTERN } from './config.js';
import { EVENTS, type ModelOf, type UpdatedModelEvent } from './contract/index.js';
import { logger } from './log.js';
import { eventFailures } from './metrics.js';
import { RETRY_POLICIES, retryDelays } from './retry.js';

const log = logger.child({ module: 'events' });

export interface Events {
  /**
   * Sends `updated_model` `{ class, model }` (see the contract) to every browser, or only to the
   * sockets in `to` (Socket.IO rooms: userSocketRoom, roomSocketRoom) when given.
   */
  emitUpdatedModel<C extends UpdatedModelEvent['class']>(
    cls: C,
    model: ModelOf<C>,
    to?: string[],
  ): void;
  /** Every socket in `of` (on every gateway instance) joins the Socket.IO room `room`. */
  socketsJoin(of: string, room: string): void;
  /** Every socket in `of` leaves `room`: no event sent to `room` after this reaches them. */
  socketsLeave(of: string, room: string): void;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function parseHostPort(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
}

/**
 * Where REDIS points: one server (`host:port`), or the primary that Sentinels name
 * (`sentinel://h1:26379,h2:26379,h3:26379/<name>`), followed through failovers.
 */
export function redisTarget(
  value: string,
):
  | { host: string; port: number }
  | { sentinels: Array<{ host: string; port: number }>; name: string } {
  const m = REDIS_SENTINEL_PATTERN.exec(value);
  if (!m) return parseHostPort(value);
  return { sentinels: (m[1] as string).split(',').map(parseHostPort), name: m[2] as string };
}

/** A client that reconnects for ever; `options` override the defaults (made for events). */
export function createRedis(value: string, options: RedisOptions = {}): Redis {
  const delays = retryDelays(RETRY_POLICIES.redisReconnect);
  const target = redisTarget(value);
  const redis = new Redis({
    ...target,
    ...('sentinels' in target
      ? {
          // A Sentinel cut off from us must not hold up finding the primary.
          sentinelCommandTimeout: 1000,
          // Not ioredis's failover detector: its +switch-master subscriptions outlive a lost
          // connection, and one arriving while the client is asking the Sentinels for the primary
          // makes ioredis end the client for good (status 'end', no more reconnecting): a gateway
          // then never hears another event (cluster test, a host crashed). Clients follow a new
          // primary through watchPrimary's check instead, within a second or two.
          failoverDetector: false,
          sentinelRetryStrategy: () => delays.next(),
        }
      : {}),
    connectTimeout: 3000,
    // Commands wait while Redis is briefly away (so events sent then still go out), but not forever:
    // 14 reconnections on the redisReconnect schedule are at most ~21 s, as before there was one.
    maxRetriesPerRequest: 14,
    // ioredis counts from 1 again after each successful connection.
    retryStrategy: (times) => {
      if (times <= 1) delays.reset();
      return delays.next();
    },
    ...options,
  });
  let down = false;
  redis.on('error', (err) => {
    if (!down) log.warn({ err: err.message }, 'redis unreachable');
    down = true;
  });
  redis.on('end', () => log.info('redis client closed'));
  redis.on('ready', () => {
    // Which server: after a failover, what tells a client on the wrong server from one on the
    // primary. (ioredis has checked that it calls itself the primary.)
    log.info({ server: connectedServer(redis) }, down ? 'redis back' : 'redis connected');
    down = false;
  });
  if ('sentinels' in target) watchPrimary(redis, target);
  return redis;
}

/** `ip:port` of the server a client is connected to, if it is. */
function connectedServer(redis: Redis): string | undefined {
  const stream = (redis as unknown as { stream?: { remoteAddress?: string; remotePort?: number } })
    .stream;
  return stream?.remoteAddress ? `${stream.remoteAddress}:${stream.remotePort}` : undefined;
}

/** How often a client behind Sentinels checks that its server is still the primary. */
export const REDIS_PRIMARY_CHECK_MS = 1000;

type SentinelTarget = { sentinels: Array<{ host: string; port: number }>; name: string };

/**
 * One set of Sentinel connections per REDIS value in a process, shared by its clients: `ask()`
 * answers the primary (`ip:port`) that a majority of the Sentinels name, or undefined.
 */
const askers = new Map<
  string,
  { users: number; ask(): Promise<string | undefined>; close(): void }
>();

function sentinelAsker(target: SentinelTarget) {
  const key = JSON.stringify(target);
  let asker = askers.get(key);
  if (!asker) {
    const clients = target.sentinels.map((s) => {
      const c = new Redis({
        ...s,
        connectTimeout: 1000,
        commandTimeout: 1000,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        retryStrategy: () => 1000,
      });
      c.on('error', () => undefined);
      return c;
    });
    asker = {
      users: 0,
      async ask() {
        const answers = await Promise.all(
          clients.map((c) =>
            c.status === 'ready'
              ? (
                  c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', target.name) as Promise<
                    string[] | null
                  >
                ).catch(() => null)
              : Promise.resolve(null),
          ),
        );
        const votes = new Map<string, number>();
        for (const a of answers)
          if (a) votes.set(`${a[0]}:${a[1]}`, (votes.get(`${a[0]}:${a[1]}`) ?? 0) + 1);
        for (const [addr, n] of votes) if (n > clients.length / 2) return addr;
        return undefined;
      },
      close() {
        for (const c of clients) c.disconnect();
        askers.delete(key);
      },
    };
    askers.set(key, asker);
  }
  asker.users++;
  return asker;
}

/**
 * A server the client reached as the primary can stop being it without closing the connection: an
 * old primary that comes back and is made a replica by the Sentinels keeps its clients, and Redis
 * does not pass a PUBLISH on to replicas, so a subscriber there hears nothing more and a publisher
 * there reaches nobody. So every second a client behind Sentinels compares the server it is
 * connected to with the primary a majority of the Sentinels name, and reconnects when they differ
 * (the Sentinels then give it the primary; a subscriber subscribes again).
 */
function watchPrimary(redis: Redis, target: SentinelTarget): void {
  const asker = sentinelAsker(target);
  let checking = false;
  let unanswered = false;
  const timer = setInterval(() => {
    const connected = connectedServer(redis);
    if (checking || redis.status !== 'ready' || !connected) return;
    checking = true;
    asker
      .ask()
      .then((primary) => {
        // Said once each way: while no majority of the Sentinels names a primary, nothing is checked.
        if (!primary !== unanswered) {
          unanswered = !primary;
          if (unanswered) log.warn({ connected }, 'no majority of the Sentinels names a primary');
          else
            log.info({ connected, primary }, 'a majority of the Sentinels names a primary again');
        }
        if (primary && primary !== connected && redis.status === 'ready') {
          log.warn({ connected, primary }, 'redis server is not the primary: reconnecting');
          redis.disconnect(true);
        }
      })
      .catch(() => undefined)
      .finally(() => (checking = false));
  }, REDIS_PRIMARY_CHECK_MS);
  timer.unref();
  redis.once('end', () => {
    clearInterval(timer);
    if (--asker.users === 0) asker.close();
  });
}

export function createEvents(redisHostPort: string | undefined): Events {
  if (!redisHostPort) {
    log.info('REDIS not set: updated_model events are not sent');
    return {
      emitUpdatedModel() {},
      socketsJoin() {},
      socketsLeave() {},
      ping: async () => {},
      close: async () => {},
    };
  }
  // Auto-pipelining: the PUBLISHes made in one turn of the event loop (a burst of posts answered
  // together) leave in one socket write instead of one each; a write to Redis on loopback costs
  // about as much CPU as building the event (POST /api/messages profile, docs/ARCHITECTURE.md).
  const redis = createRedis(redisHostPort, { enableAutoPipelining: true });
  // The emitter publishes fire-and-forget; this wrapper is where failures are seen and counted.
  const publisher = {
    publish(channel: string, message: string | Buffer) {
      return redis.publish(channel, message).catch((err: Error) => {
        eventFailures.inc();
        log.warn({ err: err.message }, 'updated_model not published');
      });
    },
  };
  const emitter = new Emitter(publisher);
  return {
    emitUpdatedModel(cls, model, to) {
      const event = { class: cls, model } as UpdatedModelEvent;
      // An empty `to` reaches nobody (never everybody): only undefined broadcasts.
      if (to === undefined) emitter.emit(EVENTS.updatedModel, event);
      else if (to.length > 0) emitter.to(to).emit(EVENTS.updatedModel, event);
    },
    socketsJoin(of, room) {
      emitter.in(of).socketsJoin(room);
    },
    socketsLeave(of, room) {
      emitter.in(of).socketsLeave(room);
    },
    async ping() {
      // A health check wants the state now: a ping queued until a lost Redis returns says nothing.
      if (['reconnecting', 'close', 'end'].includes(redis.status)) {
        throw new Error(`redis ${redis.status}`);
      }
      await redis.ping();
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
