// The etcd v3 client every process shares, with a deadline on every call.
import { Etcd3, isRecoverableError } from 'etcd3';
import {
  circuitBreaker,
  ConsecutiveBreaker,
  handleWhen,
  noop,
  retry,
  type IBackoff,
} from 'cockatiel';
import { exponentialBackoff, RETRY_POLICIES } from './retry.js';

export const ETCD_CALL_TIMEOUT_MS = 3000;

/** How long a cluster member that failed a call is left alone before it is tried again. */
export const ETCD_MEMBER_PAUSE_MS = 2000;

export function createEtcd(hosts: string[]): Etcd3 {
  // Several members (a cluster): a member that fails a call (cut off, down: each call waits for its
  // deadline) is skipped for 2 s, and a call that failed on one is made once more on another, so
  // that registrations, lease keep-alives and reads move to the members that have quorum instead
  // of picking the lost one at random again. One member: nothing to move to.
  const cluster = hosts.length > 1;
  const recoverable = handleWhen((err) => isRecoverableError(err));
  return new Etcd3({
    hosts,
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    // Streams (watches, keepalives) live long; unary calls must not hang while etcd is away.
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS },
    // etcd3's defaults open a circuit breaker for 5 s after three failures and back watches off up
    // to 10 s: after an outage, registrations and watches would come back seconds after etcd. Every
    // caller here retries on its own schedule, so calls fail fast and watches retry within 2 s;
    // with several members, only the failed member is paused (above).
    faultHandling: {
      host: () =>
        cluster
          ? circuitBreaker(recoverable, {
              halfOpenAfter: ETCD_MEMBER_PAUSE_MS,
              breaker: new ConsecutiveBreaker(1),
            })
          : noop,
      global: cluster ? retry(recoverable, { maxAttempts: 1 }) : noop,
      // etcd3 is typed for a backoff instance but calls next() on it first, as a factory allows.
      watchBackoff: exponentialBackoff(RETRY_POLICIES.etcdWatch) as IBackoff<unknown>,
    },
  });
}

export type { Etcd3 };
