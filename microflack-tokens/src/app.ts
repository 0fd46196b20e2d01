// The tokens service's express app: built from its clients, no I/O of its own; tests import this.
import type { Express } from 'express';
import { createServiceApp, type Auth, type HealthCheck, type LbClient } from '@microflack/common';
import { TOKENS_MOUNT, tokensApi } from '@microflack/common/api';
import { tokensRouter } from './routes.js';

export interface Deps {
  auth: Auth;
  /** Reaches the users service, through the load balancer. */
  lb: LbClient;
  health?: Record<string, HealthCheck>;
}

export function createApp(deps: Deps): Express {
  return createServiceApp({ health: deps.health, operations: Object.values(tokensApi) }, (app) => {
    app.use(TOKENS_MOUNT, tokensRouter({ auth: deps.auth, lb: deps.lb }));
  });
}
