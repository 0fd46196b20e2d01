// The etcd v3 client every process shares, with a deadline on every call.
import { EtcdClient } from './etcd-gateway.js';
import { RETRY_POLICIES } from './retry.js';

export const ETCD_CALL_TIMEOUT_MS = 3000;

/** How long a cluster member that failed a call is left alone before it is tried again. */
export const ETCD_MEMBER_PAUSE_MS = 2000;

/**
 * A client of `hosts` (the members, `http://host:port`). Several members (a cluster): a member
 * that fails a call (cut off, down: each call waits for its deadline) is skipped for 2 s, and a
 * call that failed on one is made once more on another, so that registrations, lease keep-alives
 * and reads move to the members that have quorum instead of picking the lost one at random again.
 * Every caller retries on its own schedule, so calls fail fast; watches come back within 2 s of
 * etcd (RETRY_POLICIES.etcdWatch).
 */
export function createEtcd(hosts: string[]): Etcd {
  const { initialDelayMs, maxDelayMs } = RETRY_POLICIES.etcdWatch;
  return new EtcdClient({
    hosts,
    callTimeoutMs: ETCD_CALL_TIMEOUT_MS,
    memberPauseMs: ETCD_MEMBER_PAUSE_MS,
    watchBackoff: { initialMs: initialDelayMs, maxMs: maxDelayMs },
  });
}

export type Etcd = EtcdClient;
export {
  Campaign,
  Election,
  EtcdClient,
  EtcdError,
  isRecoverableError,
  Lease,
  Namespace,
  Watcher,
  type KeyValue,
} from './etcd-gateway.js';
