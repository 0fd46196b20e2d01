// Service registration in etcd, in the original load balancer's key layout.
import type { Etcd3, Lease } from 'etcd3';
import { logger } from './log.js';

const log = logger.child({ module: 'registry' });

export const SERVICES_PREFIX = '/services/';
export const LEASE_TTL_SECONDS = 10;
const RETRY_MAX_MS = 5000;

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

  async function attempt(): Promise<void> {
    const base = `${SERVICES_PREFIX}${reg.service}`;
    if (reg.location) await etcd.put(`${base}/location`).value(reg.location);
    for (const [option, v] of Object.entries(reg.backend ?? {})) {
      await etcd.put(`${base}/backend/${option}`).value(v);
    }
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

  schedule(0, 1);
  return {
    upstreamKey: key,
    ready,
    async deregister() {
      stopped = true;
      clearTimeout(retryTimer);
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
