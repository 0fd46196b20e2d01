// Service registration in etcd, in the original load balancer's key layout.
import type { Etcd, Lease, Watcher } from './etcd.js';
import {
  backendOptionKey,
  BACKEND_OPTIONS,
  InstanceNameSchema,
  isBackendOption,
  LocationSchema,
  locationKey,
  ServiceNameSchema,
  serviceKeysPrefix,
  UPSTREAM_WEIGHT_MAX,
  UpstreamAddressSchema,
  upstreamKey,
} from './contract/index.js';
import type { z } from 'zod';
import { logger } from './log.js';
import { RETRY_POLICIES, retryDelays } from './retry.js';

const log = logger.child({ module: 'registry' });

export { SERVICES_PREFIX, upstreamKey } from './contract/index.js';
export const LEASE_TTL_SECONDS = 10;
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

export class RegistrationError extends Error {
  override name = 'RegistrationError';
  constructor(readonly problems: string[]) {
    super(`the load balancer would leave this registration out:\n  ${problems.join('\n  ')}`);
  }
}

/** What the load balancer would refuse in this registration (see the contract); [] if nothing. */
export function registrationProblems(reg: Registration): string[] {
  const problems: string[] = [];
  const check = (what: string, schema: z.ZodType, value: unknown) => {
    const result = schema.safeParse(value);
    if (!result.success) problems.push(`${what}: ${result.error.issues[0]?.message ?? 'invalid'}`);
  };
  check('service', ServiceNameSchema, reg.service);
  check('instance', InstanceNameSchema, reg.instance);
  check('address', UpstreamAddressSchema, reg.address);
  if (reg.location !== undefined) check('location', LocationSchema, reg.location);
  for (const [option, value] of Object.entries(reg.backend ?? {})) {
    if (!isBackendOption(option)) problems.push(`backend ${option}: not an allowed option`);
    else if (!(BACKEND_OPTIONS[option] as readonly string[]).includes(value))
      problems.push(
        `backend ${option}: ${value} is not one of ${BACKEND_OPTIONS[option].join(', ')}`,
      );
  }
  const weight = reg.weight;
  if (
    weight !== undefined &&
    (!Number.isInteger(weight) || weight < 0 || weight > UPSTREAM_WEIGHT_MAX)
  )
    problems.push(`weight: not 0-${UPSTREAM_WEIGHT_MAX}`);
  return problems;
}

/**
 * Registers the instance, keeps its lease alive, re-registers after losing it. Throws at once
 * (RegistrationError) on a registration the load balancer would leave out; never after that.
 */
export function register(etcd: Etcd, reg: Registration): RegisteredInstance {
  const problems = registrationProblems(reg);
  if (problems.length > 0) throw new RegistrationError(problems);
  const key = upstreamKey(reg.service, reg.instance);
  const value = reg.weight ? `${reg.address} weight ${reg.weight}` : reg.address;
  let lease: Lease | undefined;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  // Every key this instance owns (its upstream) or shares with its siblings (location, options).
  const owned = new Map<string, string>([
    ...(reg.location ? [[locationKey(reg.service), reg.location] as [string, string]] : []),
    ...Object.entries(reg.backend ?? {}).map(
      ([option, v]) => [backendOptionKey(reg.service, option), v] as [string, string],
    ),
  ]);
  const delays = retryDelays(RETRY_POLICIES.registration);
  let watcher: Watcher | undefined;
  let verifyTimer: NodeJS.Timeout | undefined;
  let repairing: Promise<void> | undefined;

  async function attempt(): Promise<void> {
    for (const [k, v] of owned) await etcd.put(k).value(v);
    const next = etcd.lease(LEASE_TTL_SECONDS);
    next.on('lost', (err) => {
      if (stopped || lease !== next) return;
      log.warn({ err: err.message }, 'lease lost, registering again');
      delays.reset();
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
          delays.reset();
          markReady();
          guard();
        },
        (err) => {
          const wait = delays.next();
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
          if (lease === current) {
            delays.reset();
            schedule(0, 1);
          }
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
      .prefix(serviceKeysPrefix(reg.service))
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
