// Builds the messages service's express app (no I/O: tests import this).
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
import type { Express } from 'express';
import { MESSAGES_MOUNT, messagesApi, ROOMS_MOUNT, roomsApi } from '@microflack/common/api';
import type { Directory } from './directory.js';
import { createPreviewer, type Previewer, type PreviewSettings } from './previewer.js';
import { roomsRouter } from './rooms-routes.js';
import { messagesRouter } from './routes.js';

export interface Deps {
  db: Knex;
  auth: Auth;
  events: Events;
  /** Who user ids are (the users service, through the LB). */
  directory: Directory;
  previews?: PreviewSettings;
  /** Bytes of serialised messages each instance keeps for the list. */
  jsonCacheBytes?: number;
  /** More /healthz checks, e.g. the platform's etcd and Redis. */
  health?: Record<string, HealthCheck>;
  /**
   * Whole answers kept in memory (main.ts: shared with the other instances through Redis).
   * Default: one without Redis, which answers nothing from memory but gives every GET its ETag.
   */
  answers?: ResponseCache;
}

export type MessagesApp = Express & { previewer: Previewer };

export function createApp(deps: Deps): MessagesApp {
  const previewer = createPreviewer(deps.db, deps.events, deps.previews);
  const answers = deps.answers ?? createResponseCache({ service: 'messages' });
  const app = createServiceApp(
    {
      health: {
        ...deps.health,
        database: { critical: true, check: databaseCheck(deps.db) },
      },
      operations: [...Object.values(messagesApi), ...Object.values(roomsApi)],
      front: answers.front,
    },
    (app) => {
      app.use(MESSAGES_MOUNT, messagesRouter({ ...deps, previewer, answers }));
      app.use(ROOMS_MOUNT, roomsRouter({ ...deps, answers }));
    },
  );
  return Object.assign(app, { previewer });
}
