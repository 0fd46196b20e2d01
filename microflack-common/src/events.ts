// `updated_model` events to every browser, published to Redis with the Socket.IO emitter.
import { Emitter } from '@socket.io/redis-emitter';
import { Redis, type RedisOptions } from 'ioredis';
import { DEFAULT_EVENTS_REPLAY_BYTES, REDIS_SENTINEL_PATTERN } from './config.js';
import { EVENTS, type ModelOf, type UpdatedModelEvent } from './contract/index.js';
import { logger } from './log.js';
import { eventFailures } from './metrics.js';
import { RETRY_POLICIES, retryDelays, withTimeout } from './retry.js';

const log = logger.child({ module: 'events' });

export interface Events {
  /**
   * Sends `updated_model` `{ class, model }` (see the contract) to every browser, or only to the
   * sockets in `to` (Socket.IO rooms: userSocketRoom, roomSocketRoom) when given.
   *
   * Resolves once Redis has taken the event (it has passed it to every gateway then), at once while
   * Redis is not connected (the event waits in the client's queue), and after EVENT_CONFIRM_MS at
   * most; never rejects. A handler that acknowledges a change awaits it before answering: answered
   * first, a process killed between its answer and its event (the event leaves a turn of the event
   * loop later, auto-pipelined) made a change that no reader ever heard of (chaos test).
   */
  emitUpdatedModel<C extends UpdatedModelEvent['class']>(
    cls: C,
    model: ModelOf<C>,
    to?: string[],
  ): Promise<void>;
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

/** What a client behind Sentinels is told by its check of the primary (watchPrimary). */
export interface PrimaryHooks {
  /**
   * A majority of the Sentinels named the server the client is on, in a check begun at `since`
   * (Date.now()): whatever the client sent it before then went to the primary.
   */
  confirmed(since: number): void;
}

/** A client that reconnects for ever; `options` override the defaults (made for events). */
export function createRedis(
  value: string,
  options: RedisOptions = {},
  hooks?: PrimaryHooks,
): Redis {
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
  if ('sentinels' in target) watchPrimary(redis, target, hooks);
  return redis;
}

/** `ip:port` of the server a client is connected to, if it is. */
function connectedServer(redis: Redis): string | undefined {
  const stream = (redis as unknown as { stream?: { remoteAddress?: string; remotePort?: number } })
    .stream;
  return stream?.remoteAddress ? `${stream.remoteAddress}:${stream.remotePort}` : undefined;
}

/**
 * How long a handler waits for Redis to take its event before answering anyway (Redis reached but
 * slow, or silently cut off: the event is still sent if the connection recovers).
 */
export const EVENT_CONFIRM_MS = 1000;

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
                ).catch((err: Error) => {
                  // A connection that was open through a network cut stays 'ready', but what it
                  // sends now waits for TCP's next retransmission, seconds after the network is
                  // back (h1's messages heard the Sentinels 8 s after its socketio, cluster test):
                  // a Sentinel that does not answer in time is asked on a new connection.
                  if (err.message.includes('timed out')) c.disconnect(true);
                  return null;
                })
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
function watchPrimary(redis: Redis, target: SentinelTarget, hooks?: PrimaryHooks): void {
  const asker = sentinelAsker(target);
  let checking = false;
  let unanswered = false;
  const timer = setInterval(() => {
    const connected = connectedServer(redis);
    if (checking || redis.status !== 'ready' || !connected) return;
    checking = true;
    const since = Date.now();
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
        } else if (primary === connected && connectedServer(redis) === connected) {
          hooks?.confirmed(since);
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

/**
 * Events sent to a server not yet confirmed as the primary, to send again if the client moves.
 *
 * Redis keeps no event, and a publisher cannot tell a primary from a server that is no longer one:
 * a cut-off primary keeps its local clients, and a demoted one still accepts PUBLISH and passes it
 * to nobody on the real primary. In the cluster test a host cut off with the Redis primary came
 * back, its messages instance wrote for 5 s while still on its old server (no majority of the
 * Sentinels answered it yet), and those posts' events reached no reader; their sockets had already
 * resynced. So every event stays here until a check of the primary began after it was sent names
 * the server it went to; when the client comes back on a server (after a move or a lost
 * connection), what is still here is sent again. Readers take a model they already have again
 * without harm (they keep the newest `updated_at`). Bounded by bytes: the oldest go first.
 */
export class ReplayBuffer {
  private items: Array<{ at: number; channel: string; message: string | Buffer }> = [];
  private bytes = 0;
  /** Events dropped for room since the last warning. */
  private dropped = 0;

  constructor(private readonly maxBytes: number) {}

  get size(): number {
    return this.items.length;
  }

  add(channel: string, message: string | Buffer, at = Date.now()): void {
    if (this.maxBytes === 0) return;
    this.items.push({ at, channel, message });
    this.bytes += message.length;
    const drop = this.dropOldestWhile(() => this.bytes > this.maxBytes);
    if (drop > 0) {
      if (this.dropped === 0) {
        log.warn(
          { maxBytes: this.maxBytes },
          'EVENTS_REPLAY_BYTES full: events not yet confirmed on the primary are dropped',
        );
      }
      this.dropped += drop;
    }
  }

  /** Forgets what was sent before `since`: it reached the primary. */
  confirmed(since: number): void {
    this.dropOldestWhile((item) => item.at < since);
    if (this.dropped > 0 && this.items.length === 0) {
      log.info({ dropped: this.dropped }, 'events confirmed on the primary again');
      this.dropped = 0;
    }
  }

  /** Forgets the oldest events while `more(oldest)` holds; how many it forgot. */
  private dropOldestWhile(more: (oldest: { at: number }) => boolean): number {
    let n = 0;
    for (const item of this.items) {
      if (!more(item)) break;
      this.bytes -= item.message.length;
      n++;
    }
    if (n > 0) this.items.splice(0, n);
    return n;
  }

  /** Everything kept, oldest first, and forgets it (the caller sends it again). */
  take(): Array<{ channel: string; message: string | Buffer }> {
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    return items;
  }
}

export function createEvents(
  redisHostPort: string | undefined,
  { replayBytes = DEFAULT_EVENTS_REPLAY_BYTES }: { replayBytes?: number } = {},
): Events {
  if (!redisHostPort) {
    log.info('REDIS not set: updated_model events are not sent');
    return {
      emitUpdatedModel: async () => {},
      socketsJoin() {},
      socketsLeave() {},
      ping: async () => {},
      close: async () => {},
    };
  }
  // Auto-pipelining: the PUBLISHes made in one turn of the event loop (a burst of posts answered
  // together) leave in one socket write instead of one each; a write to Redis on loopback costs
  // about as much CPU as building the event (POST /api/messages profile, docs/ARCHITECTURE.md).
  const replay = 'sentinels' in redisTarget(redisHostPort) ? new ReplayBuffer(replayBytes) : null;
  const redis = createRedis(
    redisHostPort,
    { enableAutoPipelining: true },
    replay ? { confirmed: (since) => replay.confirmed(since) } : undefined,
  );
  // The emitter publishes fire-and-forget; this wrapper is where failures are seen and counted,
  // and where emitUpdatedModel finds the PUBLISH its emit made (the emitter calls it synchronously).
  let published: Promise<unknown> | undefined;
  const publisher = {
    publish(channel: string, message: string | Buffer) {
      replay?.add(channel, message);
      published = redis.publish(channel, message).catch((err: Error) => {
        eventFailures.inc();
        log.warn({ err: err.message }, 'updated_model not published');
      });
      return published;
    },
  };
  /** Resolves when Redis has answered `p`, at once if Redis is not connected, EVENT_CONFIRM_MS at most. */
  const taken = async (p: Promise<unknown> | undefined): Promise<void> => {
    if (!p || redis.status !== 'ready') return;
    // `p` never rejects (publisher catches): only the bound can, and then the caller goes on.
    await withTimeout(p, EVENT_CONFIRM_MS).catch(() => undefined);
  };
  if (replay) {
    let connectedOnce = false;
    redis.on('ready', () => {
      if (!connectedOnce) {
        connectedOnce = true;
        return;
      }
      const again = replay.take();
      if (again.length > 0) {
        log.info({ events: again.length }, 'events not confirmed on the primary sent again');
      }
      for (const e of again) void publisher.publish(e.channel, e.message);
    });
  }
  const emitter = new Emitter(publisher);
  return {
    emitUpdatedModel(cls, model, to) {
      const event = { class: cls, model } as UpdatedModelEvent;
      published = undefined;
      // An empty `to` reaches nobody (never everybody): only undefined broadcasts.
      if (to === undefined) emitter.emit(EVENTS.updatedModel, event);
      else if (to.length > 0) emitter.to(to).emit(EVENTS.updatedModel, event);
      return taken(published);
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
