// The users service's express app: built from its clients, no I/O of its own; tests import this.
import type { Express } from 'express';
import {
  createResponseCache,
  createServiceApp,
  databaseCheck,
  type Auth,
  type Events,
  type HealthCheck,
  type Knex,
  type ResponseCache,
} from '@microflack/common';
import { USERS_MOUNT, usersApi } from '@microflack/common/api';
import {
  createLoginThrottle,
  type CreateThrottleOptions,
  type LoginThrottle,
} from './login-throttle.js';
import { createPasswords } from './passwords.js';
import { usersRouter } from './routes.js';

export interface Deps {
  db: Knex;
  auth: Auth;
  events: Events;
  /** Extra /healthz checks (the platform's etcd and Redis); the database is always checked. */
  health?: Record<string, HealthCheck>;
  /** bcrypt cost; 10 or more. */
  bcryptRounds?: number;
  /** The longest a password hash waits for its turn (passwords.ts), then 503. */
  passwordQueueWaitMs?: number;
  /**
   * The sign-in throttle, or its limits and the Redis that shares the counts between instances
   * (else each counts alone).
   */
  throttle?: CreateThrottleOptions | LoginThrottle;
  /** Bytes of serialised users each instance keeps for the list. */
  jsonCacheBytes?: number;
  /**
   * Whole answers kept in memory (main.ts: shared with the other instances through Redis).
   * Default: one without Redis, which answers nothing from memory but gives every GET its ETag.
   */
  answers?: ResponseCache;
}

export function createApp(deps: Deps): Express {
  const health: Record<string, HealthCheck> = {
    ...deps.health,
    // Without its database the service can answer nothing: HAProxy should route elsewhere.
    database: { critical: true, check: databaseCheck(deps.db) },
  };
  const answers = deps.answers ?? createResponseCache({ service: 'users' });
  return createServiceApp(
    { health, operations: Object.values(usersApi), front: answers.front },
    (app) => {
      app.use(
        USERS_MOUNT,
        usersRouter({
          db: deps.db,
          auth: deps.auth,
          events: deps.events,
          passwords: createPasswords(Math.max(10, deps.bcryptRounds ?? 11), {
            maxWaitMs: deps.passwordQueueWaitMs,
          }),
          throttle:
            deps.throttle && 'begin' in deps.throttle
              ? deps.throttle
              : createLoginThrottle(deps.throttle),
          jsonCacheBytes: deps.jsonCacheBytes,
          answers,
        }),
      );
    },
  );
}
