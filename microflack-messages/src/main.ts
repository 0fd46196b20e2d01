// The messages service process: config, database, platform, listen, register, finish pending previews.
import {
  bearerIdentity,
  connectPlatform,
  createResponseCache,
  loadConfig,
  logger,
  onOff,
  openDb,
  runService,
} from '@microflack/common';
import { createApp } from './app.js';
import { messagesConfig } from './config.js';
import { createDirectory } from './directory.js';
import { migrations } from './migrations.js';

const config = loadConfig(messagesConfig);

const db = await openDb(
  { databaseUrl: config.DATABASE_URL, home: config.MICROFLACK_HOME, service: 'messages' },
  migrations,
);
const platform = await connectPlatform(config);
// Whole list answers from memory while no write is told of (response-cache.ts).
const answers = createResponseCache({
  service: 'messages',
  redis: config.REDIS,
  maxBytes: config.ANSWER_CACHE_BYTES,
  maxAgeMs: config.ANSWER_CACHE_MAX_AGE_MS,
  // Answers are the same for the same URL and the same token's user: found before express runs.
  identify: bearerIdentity(platform.auth),
});
answers.watch(db);
const app = createApp({
  db,
  jsonCacheBytes: config.ROW_CACHE_BYTES,
  auth: platform.auth,
  events: platform.events,
  directory: createDirectory(platform.lb),
  health: platform.health,
  answers,
  previews: {
    allowPrivate: config.LINK_PREVIEW_ALLOW_PRIVATE === '1',
    allowAddresses: config.LINK_PREVIEW_ALLOW_ADDRESSES,
    timeoutMs: config.LINK_PREVIEW_TIMEOUT_MS,
    enabled: config.LINK_PREVIEWS,
  },
});
await runService({
  name: 'messages',
  config,
  app,
  etcd: platform.etcd,
  location: '/api/messages',
  // The same instances serve /api/rooms (rooms live with the messages they guard): registered as
  // the service `rooms`, so the LB routes that prefix here too.
  also: [{ name: 'rooms', location: '/api/rooms' }],
  close: [
    () => app.previewer.close(),
    () => answers.close(),
    () => platform.close(),
    () => db.destroy(),
  ],
  live: {
    link_previews: {
      schema: onOff,
      apply: (on: boolean | undefined) => app.previewer.setEnabled(on ?? config.LINK_PREVIEWS),
    },
  },
});
app.previewer
  .resumePending()
  .catch((err) => logger.warn({ err }, 'pending link previews not resumed'));
