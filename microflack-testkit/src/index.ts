// MicroFlack's test kit: private backing servers shared by a test run, processes, configs, tokens
// and auth headers. More in its subpaths: @microflack/testkit/platform, /load-balancer, /load, ...
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import jwt from 'jsonwebtoken';
import {
  connectPlatform,
  parseConfig,
  type BaseConfig,
  type Env,
  type Platform,
} from '@microflack/common';
import { startEtcd, startMariadb, startRedis, tempDir } from './processes.js';
import { startServiceProcess, type ServiceProcess } from './service-process.js';

export * from './processes.js';
export * from './service-process.js';
export * from './routes.js';
export * from './etcd-raw.js';
export * from './tcp-proxy.js';

export const TEST_JWT_SECRET_KEY = 'test-jwt-secret-key-0123456789abcdef';

// scripts/run-tests.mjs starts one etcd, Redis and MariaDB for the whole run and passes them here;
// a test file run on its own starts its own, once per process.
let shared: Promise<{ etcd: string; redis: string; mariadb: string }> | undefined;

export function sharedBackends(): Promise<{ etcd: string; redis: string; mariadb: string }> {
  shared ??= (async () => {
    const env = process.env;
    if (env.MF_TEST_ETCD && env.MF_TEST_REDIS && env.MF_TEST_MARIADB) {
      return { etcd: env.MF_TEST_ETCD, redis: env.MF_TEST_REDIS, mariadb: env.MF_TEST_MARIADB };
    }
    const [etcd, redis, mariadb] = await Promise.all([startEtcd(), startRedis(), startMariadb()]);
    return { etcd: etcd.url, redis: redis.hostPort, mariadb: mariadb.rootUrl };
  })();
  return shared;
}

/** A fresh, empty MariaDB database on the shared server; returns its URL. */
export async function createTestDatabase(prefix = 'mf'): Promise<string> {
  const { mariadb } = await sharedBackends();
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const conn = await mysql.createConnection({ uri: mariadb, connectTimeout: 5000 });
  try {
    await conn.query(
      `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
    );
  } finally {
    await conn.end();
  }
  return `${mariadb}/${name}`;
}

/**
 * A built service (`node <packageDir>/dist/main.js`) on the shared Redis and etcd (or `etcd`, one
 * of the test's own, so that live settings written there reach no other test file's services),
 * with the test secret, an unreachable LB, no shutdown grace, and a fresh MariaDB database named
 * after `database` when given; `env` adds to or overrides all that.
 */
export async function startBuiltService(
  packageDir: string,
  opts: { etcd?: string; database?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ServiceProcess> {
  const backends = await sharedBackends();
  return startServiceProcess(packageDir, {
    ETCD: opts.etcd ?? backends.etcd,
    REDIS: backends.redis,
    ...(opts.database ? { DATABASE_URL: await createTestDatabase(opts.database) } : {}),
    JWT_SECRET_KEY: TEST_JWT_SECRET_KEY,
    LB: 'http://127.0.0.1:9',
    SHUTDOWN_GRACE_MS: '0',
    LOG_LEVEL: 'info',
    ...opts.env,
  });
}

export interface TestStack {
  etcd: string;
  redis: string;
  /** A config as a service would load it, pointed at the stack. */
  config(extra?: Env): BaseConfig;
  /** etcd, revocations, auth, events and LB client, closed by stop(). */
  platform(extra?: Env): Promise<Platform>;
  stop(): Promise<void>;
}

export async function startStack(): Promise<TestStack> {
  const { etcd, redis } = await sharedBackends();
  const home = tempDir('home');
  const opened: Platform[] = [];
  const config = (extra: Env = {}) =>
    parseConfig(
      {},
      {
        NODE_ENV: 'test',
        ETCD: etcd,
        REDIS: redis,
        JWT_SECRET_KEY: TEST_JWT_SECRET_KEY,
        MICROFLACK_HOME: home,
        LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
        SHUTDOWN_GRACE_MS: '0',
        ...extra,
      },
    );
  return {
    etcd,
    redis,
    config,
    async platform(extra) {
      const p = await connectPlatform(config(extra));
      opened.push(p);
      return p;
    },
    async stop() {
      for (const p of opened) {
        await p.close();
        p.etcd.close();
      }
    },
  };
}

/** A token signed as the services sign them (or with other options, to forge bad ones). */
export function makeToken(
  userId: unknown,
  opts: jwt.SignOptions = {},
  secret = TEST_JWT_SECRET_KEY,
): string {
  return jwt.sign({ user_id: userId, jti: randomBytes(8).toString('hex') }, secret, {
    algorithm: 'HS256',
    expiresIn: 3600,
    ...opts,
  });
}

export function bearer(token: string): { Authorization: string } {
  return { Authorization: `Bearer ${token}` };
}

export function basic(username: string, password: string): { Authorization: string } {
  return { Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` };
}
