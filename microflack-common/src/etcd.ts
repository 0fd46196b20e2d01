// The etcd v3 client every process shares, with a deadline on every call.
import { Etcd3 } from 'etcd3';
import { noop, type IBackoff } from 'cockatiel';
import { exponentialBackoff, RETRY_POLICIES } from './retry.js';

export const ETCD_CALL_TIMEOUT_MS = 3000;

export function createEtcd(hosts: string[]): Etcd3 {
  return new Etcd3({
    hosts,
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    // Streams (watches, keepalives) live long; unary calls must not hang while etcd is away.
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS },
    // etcd3's defaults open a circuit breaker for 5 s after three failures and back watches off up
    // to 10 s: after an outage, registrations and watches would come back seconds after etcd. Every
    // caller here retries on its own schedule, so calls fail fast and watches retry within 2 s.
    faultHandling: {
      host: () => noop,
      global: noop,
      // etcd3 is typed for a backoff instance but calls next() on it first, as a factory allows.
      watchBackoff: exponentialBackoff(RETRY_POLICIES.etcdWatch) as IBackoff<unknown>,
    },
  });
}

export type { Etcd3 };
