// The socketio service process: Socket.IO on the service's HTTP server, registered at /socket.io.
import {
  ConfigError,
  createEtcd,
  createLbClient,
  createRedis,
  loadConfig,
  runService,
} from '@microflack/common';
import { createApp } from './app.js';
import { createSocketServer, SUBSCRIBE_WAIT_MS, subscribed } from './gateway.js';

const config = loadConfig();
// Without Redis no updated_model event would ever reach a browser: refuse to start half-working.
if (!config.REDIS) throw new ConfigError(['REDIS: required by the socketio service']);
// Named after the instance, so that Redis's CLIENT LIST says whose connection is whose.
const pub = createRedis(config.REDIS, { connectionName: `${config.INSTANCE_NAME}-pub` });
const sub = createRedis(config.REDIS, { connectionName: `${config.INSTANCE_NAME}-sub` });
const io = createSocketServer({ lb: createLbClient(config.LB), pub, sub });
// The adapter subscribes in the background. Registered before that, this instance would take
// clients and lose every event published meanwhile: a PING on the subscriber is answered after the
// subscriptions sent before it. Not for ever: while Redis is away the instance still starts (its
// clients resync when the subscription comes back).
await subscribed(sub, SUBSCRIBE_WAIT_MS);

await runService({
  name: 'socketio',
  config,
  app: createApp({ redis: pub }),
  etcd: createEtcd(config.ETCD),
  location: '/socket.io',
  // HTTP long-polling needs every request of a session on the same instance.
  backend: { balance: 'source' },
  onServer: (server) => io.attach(server),
  close: [
    () => new Promise<void>((resolve) => io.close(() => resolve())),
    () => Promise.all([pub.quit(), sub.quit()]),
  ],
});
