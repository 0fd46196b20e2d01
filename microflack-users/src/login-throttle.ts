// Slows password guessing on GET /api/users/me (which POST /api/tokens calls), never a permanent
// lockout, and never in the hands of a stranger: after a few free failures each further one must
// wait twice as long, up to a ceiling, counted
// - per (nickname, client address), tightly: one client guessing one account;
// - per nickname, more loosely, for the addresses that have been failing: many clients guessing
//   one account;
// - per client address, once it has failed: one client guessing many accounts.
// An address that has not been failing on a nickname (the real user, from home) does not wait for
// the failures of others on it: once the nickname is over its free failures, such an attempt takes
// the nickname's "clean lane", one at a time, and is checked. So however long strangers have been
// guessing, from however many addresses, the real user's correct password goes through; the price
// for a guesser is one fresh address per guess per nickname (each address's failures on any
// nickname are counted too), and the guesses from fresh addresses are checked one at a time.
// The counts live in Redis, shared by every users instance (rate-limiter-flexible's
// RateLimiterRedis), so N instances allow no more guesses than one.
//
// Without Redis, or while it is unreachable, each instance counts in its own memory with the same
// limits (rate-limiter-flexible's insuranceLimiter): sign-in keeps working and stays throttled, but
// per process, so N instances allow up to N times the guesses until Redis is back. Every Redis
// command is bounded by the client's commandTimeout; one that fails or times out goes to memory.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';
import { counter, createRedis, logger } from '@microflack/common';

const log = logger.child({ module: 'login-throttle' });

export interface ThrottleOptions {
  /** Failures allowed before waiting starts, per nickname and client address together (tight). */
  freeFailuresPerNicknameAddress: number;
  /** The same per nickname over the addresses that have failed (looser). */
  freeFailuresPerNickname: number;
  /** The same per address over every nickname, once the address has failed. */
  freeFailuresPerAddress: number;
  /** The first wait; each further failure doubles it. Whole seconds (rounded up). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** A key with no failure for this long is forgotten. */
  forgetAfterMs: number;
  /**
   * How long one attempt may keep its turn while its password is checked; after that (an instance
   * that died mid-check) the next attempt may go.
   */
  holdMs: number;
  /** Prefix of the Redis keys. */
  keyPrefix: string;
}

export const DEFAULT_THROTTLE: ThrottleOptions = {
  freeFailuresPerNicknameAddress: 5,
  freeFailuresPerNickname: 10,
  freeFailuresPerAddress: 20,
  baseDelayMs: 1000,
  maxDelayMs: 60000,
  forgetAfterMs: 15 * 60000,
  holdMs: 15000,
  keyPrefix: 'mf:login',
};

/** One sign-in attempt that may go ahead; exactly one of its three ends is called. */
export interface LoginAttempt {
  /** The password was wrong (or the nickname unknown). */
  failed(): Promise<void>;
  /** The password was right: the nickname's counts are cleared (the address keeps its count). */
  succeeded(): Promise<void>;
  /** Neither was found out (the database failed): the attempt counts for nothing. */
  release(): Promise<void>;
}

export type AttemptOrWait = { attempt: LoginAttempt; waitMs: 0 } | { waitMs: number };

export interface LoginThrottle {
  /**
   * Counts an attempt as in flight (as a failure until it ends, so that parallel guesses cannot
   * all pass before the first has failed) and answers it, or the milliseconds to wait first.
   */
  begin(nickname: string, address: string): Promise<AttemptOrWait>;
  /** Where the counts are kept: 'redis', or 'memory' when no Redis was given. */
  readonly store: 'redis' | 'memory';
  /** Changes the limits for the attempts to come (live settings); counts are kept. */
  setLimits(limits: Partial<LiveThrottleLimits>): void;
}

/** The limits an operator may change on a running instance. */
export type LiveThrottleLimits = Pick<
  ThrottleOptions,
  | 'freeFailuresPerNicknameAddress'
  | 'freeFailuresPerNickname'
  | 'freeFailuresPerAddress'
  | 'baseDelayMs'
  | 'maxDelayMs'
>;

// rate-limiter-flexible's increment script, but a key under its points limit has its expiry
// renewed on each change (a count is forgotten forgetAfterMs after its last failure, not its
// first), a key at or over the limit keeps its expiry (a turn or a wait is not prolonged by the
// attempts it turns away), and a count never goes below 0 (a release after Redis came back).
const INCR_TTL_SLIDING = `
local before = tonumber(redis.call('get', KEYS[1])) or 0
local consumed = redis.call('incrby', KEYS[1], ARGV[1])
if consumed < 0 then
  redis.call('set', KEYS[1], 0)
  consumed = 0
end
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 or before < tonumber(ARGV[3]) then
  redis.call('expire', KEYS[1], ARGV[2])
  ttl = 1000 * tonumber(ARGV[2])
end
return {consumed, ttl}
`;

// INCR_TTL_SLIDING on each of KEYS (ARGV as there), in one step: an attempt's positions in its
// nickname's, address's and (nickname, address)'s counts are taken together, so two attempts are
// in the same order in all three (counted one key at a time, from several instances, one could be
// ahead in the pair's count and behind in the nickname's, and hold a turn that another attempt,
// still within the free ones, then waited for). Returns {consumed, ttl} per key, flattened.
const INCR_TTL_SLIDING_ALL = `
local out = {}
for i, key in ipairs(KEYS) do
  local before = tonumber(redis.call('get', key)) or 0
  local consumed = redis.call('incrby', key, ARGV[1])
  if consumed < 0 then
    redis.call('set', key, 0)
    consumed = 0
  end
  local ttl = redis.call('pttl', key)
  if ttl < 0 or before < tonumber(ARGV[3]) then
    redis.call('expire', key, ARGV[2])
    ttl = 1000 * tonumber(ARGV[2])
  end
  out[2 * i - 1] = consumed
  out[2 * i] = ttl
end
return out
`;

// A count is never "over its limit" in the limiter's sense: the limits are applied here.
const COUNT_POINTS = 1e9;
// A turn key holds 1 while an attempt is checked; a wait is this value, set with the wait's expiry.
const WAITING = 1e6;

const fallbacks = counter(
  'login_throttle_fallback_total',
  'Login throttle operations counted in process memory because Redis was unreachable',
);

type MemoryOptions = ConstructorParameters<typeof RateLimiterMemory>[0];

/**
 * Counts in process memory by the same rules as INCR_TTL_SLIDING. Used alone without Redis, and as
 * the Redis limiters' insuranceLimiter (then onUse reports that Redis failed).
 */
class MemoryLimiter extends RateLimiterMemory {
  constructor(
    opts: MemoryOptions,
    private readonly onUse: () => void = () => {},
  ) {
    super(opts);
  }
  /** After a change of `by`: a key that was under its limit has its expiry renewed; never < 0. */
  private async slide(key: string | number, res: RateLimiterRes, by: number) {
    if (res.consumedPoints >= 0 && res.consumedPoints - by >= this.points) return res;
    return super.set(key, Math.max(0, res.consumedPoints), this.duration);
  }
  override consume(...args: Parameters<RateLimiterMemory['consume']>) {
    this.onUse();
    return super.consume(...args);
  }
  override async penalty(key: string | number, points = 1, options = {}) {
    this.onUse();
    return this.slide(key, await super.penalty(key, points, options), points);
  }
  override async reward(key: string | number, points = 1, options = {}) {
    this.onUse();
    return this.slide(key, await super.reward(key, points, options), -points);
  }
  override get(...args: Parameters<RateLimiterMemory['get']>) {
    this.onUse();
    return super.get(...args);
  }
  override set(...args: Parameters<RateLimiterMemory['set']>) {
    this.onUse();
    return super.set(...args);
  }
  override delete(...args: Parameters<RateLimiterMemory['delete']>) {
    this.onUse();
    return super.delete(...args);
  }
}

export interface CreateThrottleOptions extends Partial<ThrottleOptions> {
  /**
   * Shared counts. Give it a bounded commandTimeout and no offline queue (createThrottleRedis):
   * a command that cannot be answered at once must fail over to memory, not wait.
   */
  redis?: Redis;
}

/** Longest any throttle command may take before it is answered from memory instead. */
export const THROTTLE_REDIS_TIMEOUT_MS = 500;

/** A Redis client for the throttle: bounded commands, none queued while disconnected. */
export function createThrottleRedis(hostPort: string): Redis {
  return createRedis(hostPort, {
    commandTimeout: THROTTLE_REDIS_TIMEOUT_MS,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
  });
}

const wholeSeconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

// Nicknames as typed (no real one is longer than 128 UTF-16 units); anything longer is hashed so a
// huge Basic header does not become a huge Redis key.
const keyOf = (value: string) =>
  value.length <= 128 ? value : `#${createHash('sha256').update(value).digest('base64url')}`;

export function createLoginThrottle(opts: CreateThrottleOptions = {}): LoginThrottle {
  const { redis, ...rest } = opts;
  const o: ThrottleOptions = { ...DEFAULT_THROTTLE, ...rest };
  const forgetSec = wholeSeconds(o.forgetAfterMs);
  const holdSec = wholeSeconds(o.holdMs);

  let lastFallbackLog = 0;
  function onFallback(): void {
    fallbacks.inc();
    const now = Date.now();
    if (now - lastFallbackLog > 10000) {
      lastFallbackLog = now;
      log.warn('redis unreachable: failed sign-ins are counted in this instance only');
    }
  }

  // Each limiter's counts in process memory: the limiter itself without Redis, else its
  // insuranceLimiter (used when Redis fails).
  const memoryOf = new Map<RateLimiterAbstract, MemoryLimiter>();
  function limiter(name: string, points: number, duration: number): RateLimiterAbstract {
    const base = { keyPrefix: `${o.keyPrefix}:${name}`, points, duration };
    if (!redis) {
      const memory = new MemoryLimiter(base);
      memoryOf.set(memory, memory);
      return memory;
    }
    const memory = new MemoryLimiter(base, onFallback);
    const shared = new RateLimiterRedis({
      ...base,
      storeClient: redis,
      // Straight to memory while the connection is down, rather than trying a command first.
      rejectIfRedisNotReady: true,
      customIncrTtlLuaScript: INCR_TTL_SLIDING,
      insuranceLimiter: memory,
    });
    memoryOf.set(shared, memory);
    return shared;
  }

  /**
   * One more attempt in each count, in one step where they are shared (INCR_TTL_SLIDING_ALL);
   * answers each count with this attempt in it. In memory (no Redis, or Redis failing) one
   * process's calls are in order anyway.
   */
  async function countAttempt(counts: Array<[RateLimiterAbstract, string]>): Promise<number[]> {
    if (redis?.status === 'ready') {
      try {
        const keys = counts.map(([l, key]) => l.getKey(key));
        const out = (await redis.eval(
          INCR_TTL_SLIDING_ALL,
          keys.length,
          ...keys,
          '1',
          String(forgetSec),
          String(COUNT_POINTS),
        )) as number[];
        return counts.map((_, i) => Number(out[2 * i]));
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'counting in memory');
      }
    }
    return Promise.all(
      counts.map(
        async ([l, key]) => (await (memoryOf.get(l) as MemoryLimiter).penalty(key)).consumedPoints,
      ),
    );
  }

  // Per nickname and per address: `count` is failures plus attempts in flight; `turn` is held by
  // the one attempt allowed once the free ones are used up, or set to WAITING for the wait after
  // a failure; `failed` counts decided failures alone. It sets the length of a wait, and an
  // address that has never failed (a NAT, the LB itself, a benchmark) may have any number of
  // sign-ins in flight.
  const nickname = {
    free: o.freeFailuresPerNickname,
    count: limiter('n', COUNT_POINTS, forgetSec),
    turn: limiter('nt', 1, holdSec),
    failed: limiter('nf', COUNT_POINTS, forgetSec),
  };
  // The clean lane of a nickname over its free failures: one attempt at a time from an address
  // that has not been failing on it.
  const cleanLane = limiter('nc', 1, holdSec);
  const pair = {
    free: o.freeFailuresPerNicknameAddress,
    count: limiter('p', COUNT_POINTS, forgetSec),
    turn: limiter('pt', 1, holdSec),
    failed: limiter('pf', COUNT_POINTS, forgetSec),
  };
  const address = {
    free: o.freeFailuresPerAddress,
    count: limiter('a', COUNT_POINTS, forgetSec),
    turn: limiter('at', 1, holdSec),
    failed: limiter('af', COUNT_POINTS, forgetSec),
  };

  const delayMs = (over: number) =>
    Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** Math.min(30, Math.max(0, over)));

  /** 0: this attempt now holds the turn; else the milliseconds to wait. */
  async function takeTurn(turn: RateLimiterAbstract, key: string, position: number, free: number) {
    try {
      await turn.consume(key);
      return 0;
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      if (err.consumedPoints > WAITING && err.msBeforeNext > 0) return err.msBeforeNext;
      // Another attempt is being checked: wait as if it had failed.
      return delayMs(position - 1 - free);
    }
  }

  async function begin(nicknameTyped: string, addressSeen: string): Promise<AttemptOrWait> {
    const nick = keyOf(nicknameTyped);
    const addr = keyOf(addressSeen);
    const both = keyOf(`${nicknameTyped}\u0000${addressSeen}`);
    const [[cn, ca, cp], af, pf] = await Promise.all([
      countAttempt([
        [nickname.count, nick],
        [address.count, addr],
        [pair.count, both],
      ]) as Promise<[number, number, number]>,
      address.failed.get(addr),
      pair.failed.get(both),
    ]);
    const addressHasFailed = (af?.consumedPoints ?? 0) > 0;
    // No failure from this address on this nickname (within forgetAfterMs) and no other attempt of
    // it in flight: its attempt over the nickname's free ones goes through the clean lane, one at a
    // time. A real user signs in once; a burst from one fresh address is not clean past its first
    // attempt, so the nickname's turn holds the rest (its free checks and no more).
    const clean = cp === 1 && (pf?.consumedPoints ?? 0) === 0;
    let heldP = false;
    let heldN = false;
    let heldC = false;
    let heldA = false;
    let waitMs = 0;
    if (cp >= pair.free) {
      waitMs = await takeTurn(pair.turn, both, cp, pair.free);
      heldP = waitMs === 0;
    }
    if (waitMs === 0 && cn >= nickname.free) {
      if (clean) {
        waitMs = await takeTurn(cleanLane, nick, 1, 0);
        heldC = waitMs === 0;
      } else {
        waitMs = await takeTurn(nickname.turn, nick, cn, nickname.free);
        heldN = waitMs === 0;
      }
    }
    if (waitMs === 0 && addressHasFailed && ca >= address.free) {
      waitMs = await takeTurn(address.turn, addr, ca, address.free);
      heldA = waitMs === 0;
    }

    const releaseTurns = () =>
      Promise.all([
        heldP ? pair.turn.delete(both) : undefined,
        heldN ? nickname.turn.delete(nick) : undefined,
        heldC ? cleanLane.delete(nick) : undefined,
        heldA ? address.turn.delete(addr) : undefined,
      ]);
    const uncount = () =>
      Promise.all([
        nickname.count.reward(nick),
        address.count.reward(addr),
        pair.count.reward(both),
        releaseTurns(),
      ]);

    if (waitMs > 0) {
      // Turned away: it is no attempt, and counts for nothing.
      await uncount();
      return { waitMs };
    }

    let ended = false;
    const once = (end: () => Promise<unknown>) => async () => {
      if (ended) return;
      ended = true;
      await end();
    };
    // From the failure that uses up the free ones on, each is followed by a wait (which also ends
    // the turn this attempt held), doubled for each failure decided beyond the free ones.
    async function failedOn(dim: typeof nickname, key: string, position: number) {
      const failures = (await dim.failed.penalty(key)).consumedPoints;
      if (position < dim.free) return;
      const waitSec = wholeSeconds(delayMs(failures - dim.free));
      await dim.turn.set(key, WAITING + 1, waitSec);
    }
    const attempt: LoginAttempt = {
      failed: once(async () => {
        await Promise.all([
          failedOn(pair, both, cp),
          failedOn(nickname, nick, cn),
          failedOn(address, addr, ca),
        ]);
        // Only once the failure is counted: an attempt of this address that takes the lane next
        // sees it.
        if (heldC) await cleanLane.delete(nick);
      }),
      // The address keeps its count: a guesser must not reset it by signing in to an account of
      // its own.
      succeeded: once(() =>
        Promise.all([
          nickname.count.delete(nick),
          nickname.failed.delete(nick),
          nickname.turn.delete(nick),
          cleanLane.delete(nick),
          pair.count.delete(both),
          pair.failed.delete(both),
          pair.turn.delete(both),
          address.count.reward(addr),
          heldA ? address.turn.delete(addr) : undefined,
        ]),
      ),
      release: once(uncount),
    };
    return { attempt, waitMs: 0 };
  }

  function setLimits(limits: Partial<LiveThrottleLimits>): void {
    Object.assign(o, limits);
    pair.free = o.freeFailuresPerNicknameAddress;
    nickname.free = o.freeFailuresPerNickname;
    address.free = o.freeFailuresPerAddress;
  }

  return { begin, store: redis ? 'redis' : 'memory', setLimits };
}
