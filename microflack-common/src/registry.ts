// Service registration in etcd, in the original load balancer's key layout.
import type { Etcd3, Lease, Watcher } from 'etcd3';
import { logger } from './log.js';

const log = logger.child({ module: 'registry' });

export const SERVICES_PREFIX = '/services/';
export const LEASE_TTL_SECONDS = 10;
const RETRY_MAX_MS = 5000;
// A registration deleted behind the instance's back is noticed through a watch at once; this
// periodic read is the safety net for a watch that missed it (e.g. during its own reconnect).
const VERIFY_INTERVAL_MS = 1000;

export interface Registration {
  service: string;
  instance: string;
  /** host:port, as the load balancer should reach this instance. */
  address: string;
  /** URL prefix; `/` makes the service the default backend. */
  location?: string;
  /** HAProxy backend options, e.g. `{ balance: 'roundrobin' }`. */
  backend?: Record<string, string>;
  weight?: number;
}

export interface RegisteredInstance {
  readonly upstreamKey: string;
  /** Resolves once the instance is registered (retries until then). */
  readonly ready: Promise<void>;
  deregister(): Promise<void>;
}

export function upstreamKey(service: string, instance: string): string {
  return `${SERVICES_PREFIX}${service}/upstream/${instance}`;
}

/** Registers the instance, keeps its lease alive, re-registers after losing it; never throws. */
export function register(etcd: Etcd3, reg: Registration): RegisteredInstance {
  const key = upstreamKey(reg.service, reg.instance);
  const value = reg.weight ? `${reg.address} weight ${reg.weight}` : reg.address;
  let lease: Lease | undefined;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const base = `${SERVICES_PREFIX}${reg.service}`;
  // Every key this instance owns (its upstream) or shares with its siblings (location, options).
  const owned = new Map<string, string>([
    ...(reg.location ? [[`${base}/location`, reg.location] as [string, string]] : []),
    ...Object.entries(reg.backend ?? {}).map(
      ([option, v]) => [`${base}/backend/${option}`, v] as [string, string],
    ),
  ]);
  let watcher: Watcher | undefined;
  let verifyTimer: NodeJS.Timeout | undefined;
  let repairing: Promise<void> | undefined;

  async function attempt(): Promise<void> {
    for (const [k, v] of owned) await etcd.put(k).value(v);
    const next = etcd.lease(LEASE_TTL_SECONDS);
    next.on('lost', (err) => {
      if (stopped || lease !== next) return;
      log.warn({ err: err.message }, 'lease lost, registering again');
      schedule(0, 1);
    });
    await next.put(key).value(value);
    lease = next;
  }

  function schedule(delayMs: number, tries: number): void {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      if (stopped) return;
      const previous = lease;
      lease = undefined;
      previous?.release();
      attempt().then(
        () => {
          log.info({ key, value, tries }, 'registered');
          markReady();
          guard();
        },
        (err) => {
          const wait = Math.min(RETRY_MAX_MS, 250 * 2 ** Math.min(tries, 5));
          log.warn(
            { err: err.message, tries, retryInMs: wait },
            'etcd unreachable, registration retrying',
          );
          schedule(wait, tries + 1);
        },
      );
    }, delayMs);
  }

  /**
   * Puts back whatever was deleted while this instance lives: its upstream key (an operator's
   * delete, a lease lost in an outage) and the service's location and options, within a second.
   */
  function repair(why: string): void {
    if (stopped || repairing || !lease) return;
    const current = lease;
    repairing = (async () => {
      const missing: string[] = [];
      for (const [k, v] of owned) {
        if ((await etcd.get(k).string()) === null) {
          await etcd.put(k).value(v);
          missing.push(k);
        }
      }
      if ((await etcd.get(key).string()) === null) {
        missing.push(key);
        try {
          await current.put(key).value(value);
        } catch (err) {
          // The lease itself is gone (expired during an outage): register with a new one.
          log.warn({ err: (err as Error).message }, 'lease gone, registering again');
          if (lease === current) schedule(0, 1);
          return;
        }
      }
      if (missing.length > 0) log.warn({ keys: missing, why }, 'registration keys put back');
    })()
      .catch((err) => log.debug({ err: (err as Error).message }, 'registration check failed'))
      .finally(() => (repairing = undefined));
  }

  function guard(): void {
    if (stopped) return;
    verifyTimer ??= setInterval(() => repair('periodic check'), VERIFY_INTERVAL_MS);
    verifyTimer.unref();
    if (watcher) return;
    etcd
      .watch()
      .prefix(`${base}/`)
      .create()
      .then(
        (w) => {
          if (stopped) {
            w.cancel().catch(() => undefined);
            return;
          }
          watcher = w;
          w.on('delete', (kv) => {
            const k = kv.key.toString();
            if (k === key || owned.has(k)) repair(`${k} deleted`);
          });
          // Deletes during a watch outage are not replayed: check everything once it is back.
          w.on('connected', () => repair('watch reconnected'));
          w.on('error', () => undefined);
        },
        // The periodic check covers the time until the next registration tries again.
        (err) => log.debug({ err: (err as Error).message }, 'registration watch not started'),
      );
  }

  schedule(0, 1);
  return {
    upstreamKey: key,
    ready,
    async deregister() {
      stopped = true;
      clearTimeout(retryTimer);
      clearInterval(verifyTimer);
      await watcher?.cancel().catch(() => undefined);
      const current = lease;
      lease = undefined;
      if (!current) return;
      try {
        // Revoking the lease deletes the upstream key: the LB stops routing here.
        await current.revoke();
        log.info({ key }, 'deregistered');
      } catch (err) {
        log.warn(
          { err: (err as Error).message, key },
          'deregistration failed; the lease will expire',
        );
        current.release();
      }
    },
  };
}
