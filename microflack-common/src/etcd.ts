// The etcd v3 client every process shares, with a deadline on every call.
import { Etcd3 } from 'etcd3';

export const ETCD_CALL_TIMEOUT_MS = 3000;

export function createEtcd(hosts: string[]): Etcd3 {
  return new Etcd3({
    hosts,
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    // Streams (watches, keepalives) live long; unary calls must not hang while etcd is away.
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS },
  });
}

export type { Etcd3 };
