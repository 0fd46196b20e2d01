// The users service process: config, database, platform clients, the sweep, then listen and register.
import {
  connectPlatform,
  anonymousOnly,
  createResponseCache,
  loadConfig,
  logger,
  openDb,
  runService,
} from '@microflack/common';
import { createApp } from './app.js';
import { usersConfig } from './config.js';
import { createLoginThrottle, createThrottleRedis } from './login-throttle.js';
import { migrations } from './migrations.js';
import { startSweeper } from './presence.js';

const config = loadConfig(usersConfig);
const db = await openDb(
  { databaseUrl: config.DATABASE_URL, home: config.MICROFLACK_HOME, service: 'users' },
  migrations,
);
const platform = await connectPlatform(config);
// Whole list answers from memory while no write is told of (response-cache.ts).
const answers = createResponseCache({
  service: 'users',
  redis: config.REDIS,
  maxBytes: config.ANSWER_CACHE_BYTES,
  maxAgeMs: config.ANSWER_CACHE_MAX_AGE_MS,
  // Only requests without a token are found before express runs: a token's request marks its user
  // seen (a write), which only the app does.
  identify: anonymousOnly,
});
answers.watch(db);
// Failed sign-ins are counted in Redis, shared by every instance; without REDIS, per instance.
const throttleRedis = config.REDIS ? createThrottleRedis(config.REDIS) : undefined;
if (!throttleRedis) logger.warn('REDIS not set: failed sign-ins are counted per instance');
const throttle = createLoginThrottle({
  redis: throttleRedis,
  freeFailuresPerNicknameAddress: config.LOGIN_FREE_FAILURES_PER_NICKNAME_ADDRESS,
  freeFailuresPerNickname: config.LOGIN_FREE_FAILURES_PER_NICKNAME,
  freeFailuresPerAddress: config.LOGIN_FREE_FAILURES_PER_ADDRESS,
  baseDelayMs: config.LOGIN_BASE_DELAY_MS,
  maxDelayMs: config.LOGIN_MAX_DELAY_MS,
  forgetAfterMs: config.LOGIN_FORGET_AFTER_SECONDS * 1000,
});
const app = createApp({
  db,
  jsonCacheBytes: config.ROW_CACHE_BYTES,
  auth: platform.auth,
  events: platform.events,
  health: platform.health,
  bcryptRounds: config.BCRYPT_ROUNDS,
  passwordQueueWaitMs: config.PASSWORD_QUEUE_WAIT_MS,
  throttle,
  answers,
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
  close: [
    () => sweeper.stop(),
    () => answers.close(),
    () => db.destroy(),
    () => throttleRedis?.quit().catch(() => throttleRedis.disconnect()),
    () => platform.close(),
  ],
  // The throttle's limits, changed without a restart: /config/users/<key> (or /config/all/<key>),
  // validated as the environment variable of the same name; deleting the key restores it.
  live: {
    login_free_failures_per_nickname_address: {
      schema: usersConfig.LOGIN_FREE_FAILURES_PER_NICKNAME_ADDRESS,
      apply: (v: number | undefined) =>
        throttle.setLimits({
          freeFailuresPerNicknameAddress: v ?? config.LOGIN_FREE_FAILURES_PER_NICKNAME_ADDRESS,
        }),
    },
    login_free_failures_per_nickname: {
      schema: usersConfig.LOGIN_FREE_FAILURES_PER_NICKNAME,
      apply: (v: number | undefined) =>
        throttle.setLimits({
          freeFailuresPerNickname: v ?? config.LOGIN_FREE_FAILURES_PER_NICKNAME,
        }),
    },
    login_free_failures_per_address: {
      schema: usersConfig.LOGIN_FREE_FAILURES_PER_ADDRESS,
      apply: (v: number | undefined) =>
        throttle.setLimits({ freeFailuresPerAddress: v ?? config.LOGIN_FREE_FAILURES_PER_ADDRESS }),
    },
    login_base_delay_ms: {
      schema: usersConfig.LOGIN_BASE_DELAY_MS,
      apply: (v: number | undefined) =>
        throttle.setLimits({ baseDelayMs: v ?? config.LOGIN_BASE_DELAY_MS }),
    },
    login_max_delay_ms: {
      schema: usersConfig.LOGIN_MAX_DELAY_MS,
      apply: (v: number | undefined) =>
        throttle.setLimits({ maxDelayMs: v ?? config.LOGIN_MAX_DELAY_MS }),
    },
  },
});
