// `updated_model` events to every browser, published to Redis with the Socket.IO emitter.
import { Emitter } from '@socket.io/redis-emitter';
import { Redis, type RedisOptions } from 'ioredis';
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

/** The prefix of a REDIS value naming Sentinels: `sentinel:<primary name>@host:port,host:port`. */
export const REDIS_SENTINEL_PREFIX = 'sentinel:';

/**
 * Where a REDIS value says Redis is: one server (`host:port`), or the primary that Sentinels name
 * (`sentinel:<name>@host:port,...`), which ioredis asks them for and asks again after a failover.
 */
export function redisAddress(target: string): RedisOptions {
  if (!target.startsWith(REDIS_SENTINEL_PREFIX)) return parseHostPort(target);
  const rest = target.slice(REDIS_SENTINEL_PREFIX.length);
  const at = rest.indexOf('@');
  return {
    name: rest.slice(0, at),
    sentinels: rest
      .slice(at + 1)
      .split(',')
      .map((hostPort) => parseHostPort(hostPort)),
  };
}

/** A client that reconnects for ever; `options` override the defaults (made for events). */
export function createRedis(target: string, options: RedisOptions = {}): Redis {
  const delays = retryDelays(RETRY_POLICIES.redisReconnect);
  const redis = new Redis({
    ...redisAddress(target),
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
  redis.on('ready', () => {
    if (down) log.info('redis back');
    down = false;
  });
  return redis;
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
  const redis = createRedis(redisHostPort);
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
