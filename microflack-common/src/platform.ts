// What a service's main.ts needs from the platform, built from config in one call.
import type { BaseConfig } from './config.js';
import { createAuth, type Auth } from './auth.js';
import { createEtcd, type Etcd } from './etcd.js';
import { createEvents, type Events } from './events.js';
import { createLbClient, type LbClient } from './lb-client.js';
import { RETRY_POLICIES, retryPolicy } from './retry.js';
import { createRevocationList } from './revocation.js';
import type { HealthCheck } from './service.js';

export interface Platform {
  etcd: Etcd;
  auth: Auth;
  events: Events;
  lb: LbClient;
  /** etcd and Redis checks for /healthz: reported, but not critical (REST works without them). */
  health: Record<string, HealthCheck>;
  close(): Promise<void>;
}

export async function connectPlatform(config: BaseConfig): Promise<Platform> {
  const etcd = createEtcd(config.ETCD);
  const revocations = createRevocationList(etcd);
  await startRevocations(revocations);
  const events = createEvents(config.REDIS, { replayBytes: config.EVENTS_REPLAY_BYTES });
  const health: Record<string, HealthCheck> = {
    etcd: { critical: false, check: () => etcd.maintenance.status() },
  };
  if (config.REDIS) health.redis = { critical: false, check: () => events.ping() };
  return {
    etcd,
    auth: createAuth(config.JWT_SECRET_KEY, revocations),
    events,
    lb: createLbClient(config.LB),
    health,
    async close() {
      await revocations.stop();
      await events.close();
    },
  };
}

// Tries in all before a service gives up starting (about two minutes without etcd).
const REVOCATION_START_TRIES = 60;

// Without the revoked set a revoked token would pass, so start waits for etcd.
async function startRevocations(
  revocations: ReturnType<typeof createRevocationList>,
): Promise<void> {
  await retryPolicy(RETRY_POLICIES.revocationStart, {
    maxAttempts: REVOCATION_START_TRIES - 1,
  }).execute(() => revocations.start());
}
