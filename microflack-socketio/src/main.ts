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
import { createSocketServer } from './gateway.js';

const config = loadConfig();
// Without Redis no updated_model event would ever reach a browser: refuse to start half-working.
if (!config.REDIS) throw new ConfigError(['REDIS: required by the socketio service']);
const pub = createRedis(config.REDIS);
const sub = createRedis(config.REDIS);
const io = createSocketServer({ lb: createLbClient(config.LB), pub, sub });

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
