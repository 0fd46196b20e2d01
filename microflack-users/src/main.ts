// The users service process: config, database, platform clients, the sweep, then listen and register.
import { connectPlatform, loadConfig, openDb, runService } from '@microflack/common';
import { createApp } from './app.js';
import { usersConfig } from './config.js';
import { migrations } from './migrations.js';
import { startSweeper } from './presence.js';

const config = loadConfig(usersConfig);
const db = await openDb(
  { databaseUrl: config.DATABASE_URL, home: config.MICROFLACK_HOME, service: 'users' },
  migrations,
);
const platform = await connectPlatform(config);
const app = createApp({
  db,
  auth: platform.auth,
  events: platform.events,
  health: platform.health,
  bcryptRounds: config.BCRYPT_ROUNDS,
});
const sweeper = startSweeper({
  etcd: platform.etcd,
  db,
  events: platform.events,
  instance: config.INSTANCE_NAME,
  onlineTimeoutSeconds: config.ONLINE_TIMEOUT_SECONDS,
  sweepIntervalMs: config.SWEEP_INTERVAL_MS,
  leaderTtlSeconds: config.SWEEP_LEADER_TTL_SECONDS,
});
await runService({
  name: 'users',
  config,
  app,
  etcd: platform.etcd,
  location: '/api/users',
  close: [() => sweeper.stop(), () => db.destroy(), () => platform.close()],
});
