// Builds the messages service's express app (no I/O: tests import this).
import {
  createServiceApp,
  type Auth,
  type Events,
  type HealthCheck,
  type Knex,
} from '@microflack/common';
import type { Express } from 'express';
import { MESSAGES_MOUNT, messagesApi } from '@microflack/common/api';
import { createPreviewer, type Previewer, type PreviewSettings } from './previewer.js';
import { messagesRouter } from './routes.js';

export interface Deps {
  db: Knex;
  auth: Auth;
  events: Events;
  previews?: PreviewSettings;
  /** Bytes of serialised messages each instance keeps for the list. */
  jsonCacheBytes?: number;
  /** More /healthz checks, e.g. the platform's etcd and Redis. */
  health?: Record<string, HealthCheck>;
}

export type MessagesApp = Express & { previewer: Previewer };

export function createApp(deps: Deps): MessagesApp {
  const previewer = createPreviewer(deps.db, deps.events, deps.previews);
  const app = createServiceApp(
    {
      health: {
        ...deps.health,
        database: { critical: true, check: () => deps.db.raw('select 1') },
      },
      operations: Object.values(messagesApi),
    },
    (app) => {
      app.use(MESSAGES_MOUNT, messagesRouter({ ...deps, previewer }));
    },
  );
  return Object.assign(app, { previewer });
}
