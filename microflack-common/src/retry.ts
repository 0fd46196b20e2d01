// The platform's one retry schedule (cockatiel): exponential backoff with jitter, named per use.
// The delay before the nth retry is drawn from [d/2, d), d = min(maxDelayMs, initialDelayMs * 2^(n-1)):
// never above the cap, never a burst of immediate retries, and spread so that many instances coming
// back after the same outage do not retry in step.
import {
  ExponentialBackoff,
  halfJitterGenerator,
  handleAll,
  retry,
  type IBackoff,
  type IBackoffFactory,
  type Policy,
  type RetryPolicy,
} from 'cockatiel';

export interface BackoffPolicy {
  /** What retries on this schedule, for logs. */
  readonly name: string;
  /** Upper bound of the first delay, ms. */
  readonly initialDelayMs: number;
  /** Upper bound of every delay, ms. */
  readonly maxDelayMs: number;
}

export function backoffPolicy(
  name: string,
  initialDelayMs: number,
  maxDelayMs: number,
): BackoffPolicy {
  if (!(initialDelayMs > 0 && maxDelayMs >= initialDelayMs))
    throw new RangeError(`${name}: backoff needs 0 < initialDelayMs <= maxDelayMs`);
  return { name, initialDelayMs, maxDelayMs };
}

/** Every retry schedule of the platform, each with the bounds it had before there was one policy. */
export const RETRY_POLICIES = {
  /** A call through the load balancer (lb-client): 4 retries wait at most 1.5 s in all. */
  lbCall: backoffPolicy('lb call', 100, 1000),
  /** Registering in etcd while etcd is away (registry). */
  registration: backoffPolicy('registration', 500, 5000),
  /** Loading the revoked-token set at start, before a service may check tokens (platform). */
  revocationStart: backoffPolicy('revocation start', 100, 2000),
  /** Reconnecting to Redis (events, the socketio gateway's adapter connections). */
  redisReconnect: backoffPolicy('redis reconnect', 100, 2000),
  /** Re-opening an etcd watch (the etcd client's watches): watches back within 2 s of etcd. */
  etcdWatch: backoffPolicy('etcd watch', 200, 2000),
  /** Reading the live settings (/config/) at start while etcd is away (live-config). */
  liveSettings: backoffPolicy('live settings', 250, 5000),
  /** Starting HAProxy again after it died or a start failed (the LB configurator). */
  haproxyRestart: backoffPolicy('haproxy restart', 500, 10000),
} as const;

/** The policy as a cockatiel backoff, for cockatiel's retry() or a client that takes one. */
export function exponentialBackoff(policy: BackoffPolicy): IBackoffFactory<unknown> {
  return new ExponentialBackoff({
    initialDelay: policy.initialDelayMs,
    maxDelay: policy.maxDelayMs,
    generator: halfJitterGenerator,
  });
}

/** cockatiel's retry with this backoff: `maxAttempts` retries after the first try. */
export function retryPolicy(
  policy: BackoffPolicy,
  opts: { maxAttempts: number; handle?: Policy },
): RetryPolicy {
  return retry(opts.handle ?? handleAll, {
    maxAttempts: opts.maxAttempts,
    backoff: exponentialBackoff(policy),
  });
}

/** The same delays one at a time, for code that schedules its own retries (timers, callbacks). */
export interface RetryDelays {
  /** The delay before the next retry, ms; each call moves one step up the schedule. */
  next(): number;
  /** Back to the first delay (after a success). */
  reset(): void;
}

export function retryDelays(policy: BackoffPolicy): RetryDelays {
  const factory = exponentialBackoff(policy);
  let current: IBackoff<unknown> | undefined;
  return {
    next() {
      current = current ? current.next(undefined) : factory.next(undefined);
      return current.duration;
    },
    reset() {
      current = undefined;
    },
  };
}

/**
 * `p`, or a rejection ("timed out after N ms") once `ms` have passed; the timer never holds the
 * process. The verdict waits one turn of the event loop past the timer (setImmediate runs after
 * the loop has read the sockets): when this process was busy past `ms` (a burst of requests, a
 * GC), an answer that came meanwhile is already waiting to be read, and the dependency was not
 * slow. Without it, timers run first after such a stall, and a dependency that had answered was
 * called unreachable (in /healthz, a database check failing would take the instance out).
 */
export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let turn: NodeJS.Immediate | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        turn = setImmediate(() => reject(new Error(`timed out after ${ms} ms`)));
        turn.unref();
      }, ms);
      timer.unref();
    }),
  ]).finally(() => {
    clearTimeout(timer);
    if (turn) clearImmediate(turn);
  });
}
