// The whole MicroFlack platform for end-to-end tests: HAProxy configured from etcd, and every
// service as a built process (node dist/main.js) pointed at real etcd, Redis and MariaDB.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import { startTestLoadBalancer } from './load-balancer.js';
import {
  createTestDatabase,
  startEtcd,
  startMariadb,
  startRedis,
  startServiceProcess,
  tempDir,
  TEST_JWT_SECRET_KEY,
  waitFor,
  type EtcdServer,
  type MariadbServer,
  type RedisServer,
  type ServiceProcess,
} from './index.js';

// The repository root, from microflack-testkit/src or microflack-testkit/dist.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type ServiceName = 'users' | 'tokens' | 'messages' | 'socketio' | 'ui';
export const ALL_SERVICES: ServiceName[] = ['users', 'tokens', 'messages', 'socketio', 'ui'];

export interface PlatformOptions {
  /** Which services to start (default all); more can be started later with startService. */
  services?: ServiceName[];
  /** Extra environment per service, e.g. `{ ui: { NO_SOCKETIO: '1' } }`. */
  env?: Partial<Record<ServiceName, NodeJS.ProcessEnv>>;
  /** A MariaDB of the platform's own (to stop and restart it) instead of the shared one. */
  ownMariadb?: boolean;
  /** Password of HAProxy's stats page (user admin) at /stats. */
  statsPassword?: string;
}

export interface Platform {
  /** The load balancer, where browsers and tests go: http://127.0.0.1:<port> */
  url: string;
  etcd: EtcdServer;
  redis: RedisServer;
  /** Set with the ownMariadb option. */
  mariadb?: MariadbServer;
  /** Running instances by service, in start order. */
  instances: Record<ServiceName, ServiceProcess[]>;
  /** Starts one more instance and waits until the load balancer routes to the service. */
  startService(name: ServiceName, env?: NodeJS.ProcessEnv): Promise<ServiceProcess>;
  stopService(name: ServiceName, instance: ServiceProcess): Promise<void>;
  /** The last lines each service logged, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

// A request that only the service itself answers this way (HAProxy answers 503 while it has none).
const probes: Record<
  ServiceName,
  { path: string; init?: RequestInit; ok: (res: Response) => boolean }
> = {
  users: { path: '/api/users', ok: (r) => r.status === 200 },
  tokens: { path: '/api/tokens', init: { method: 'POST' }, ok: (r) => r.status === 401 },
  messages: { path: '/api/messages', ok: (r) => r.status === 200 },
  socketio: { path: '/socket.io/?EIO=4&transport=polling', ok: (r) => r.status === 200 },
  ui: {
    path: '/',
    ok: (r) => r.status === 200 && (r.headers.get('content-type') ?? '').includes('html'),
  },
};

/**
 * Starts a private etcd and Redis (the registry and the event bus must not be shared with other
 * test files running at the same time, or their services would join this platform), fresh
 * databases on the shared MariaDB, HAProxy, and the services; resolves once every one is routed.
 */
export async function startPlatform(opts: PlatformOptions = {}): Promise<Platform> {
  const dir = tempDir('platform');
  const mariadb = opts.ownMariadb
    ? await startMariadb(fs.mkdtempSync(path.join(dir, 'mariadb-')))
    : undefined;
  const database = (prefix: string) =>
    mariadb ? createDatabaseOn(mariadb.rootUrl, prefix) : createTestDatabase(prefix);
  const [etcd, redis, usersDb, messagesDb] = await Promise.all([
    startEtcd(fs.mkdtempSync(path.join(dir, 'etcd-'))),
    startRedis(fs.mkdtempSync(path.join(dir, 'redis-'))),
    database('users'),
    database('messages'),
  ]);
  const lb = await startTestLoadBalancer({ etcd: etcd.url, statsPassword: opts.statsPassword });
  const instances: Record<ServiceName, ServiceProcess[]> = {
    users: [],
    tokens: [],
    messages: [],
    socketio: [],
    ui: [],
  };
  const common: NodeJS.ProcessEnv = {
    NODE_ENV: 'test',
    ETCD: etcd.url,
    REDIS: redis.hostPort,
    LB: lb.url,
    JWT_SECRET_KEY: TEST_JWT_SECRET_KEY,
    MICROFLACK_HOME: path.join(dir, 'home'),
    SHUTDOWN_GRACE_MS: '300',
    LOG_LEVEL: 'info',
  };
  const perService: Record<ServiceName, NodeJS.ProcessEnv> = {
    users: { DATABASE_URL: usersDb, BCRYPT_ROUNDS: '10' },
    tokens: {},
    messages: { DATABASE_URL: messagesDb },
    socketio: {},
    ui: {},
  };

  async function routed(name: ServiceName, timeoutMs = 30000): Promise<void> {
    const probe = probes[name];
    await waitFor(
      `the load balancer to route ${name}`,
      async () =>
        probe.ok(
          await fetch(lb.url + probe.path, { ...probe.init, signal: AbortSignal.timeout(2000) }),
        ),
      timeoutMs,
      100,
    );
  }

  // A new instance makes the configurator reload HAProxy, and requests that arrive in the middle
  // of it can fail; tests start once the reloads have stopped and every service answers.
  async function settle(): Promise<void> {
    let quiet = 0;
    await waitFor(
      'the load balancer to settle',
      async () => {
        const reloads = lb.reloads();
        const running = ALL_SERVICES.filter((n) => instances[n].length > 0);
        await Promise.all(running.map((n) => routed(n, 2000)));
        await new Promise((r) => setTimeout(r, 250));
        quiet = lb.reloads() === reloads ? quiet + 1 : 0;
        return quiet >= 3;
      },
      30000,
      0,
    );
  }

  async function startService(
    name: ServiceName,
    env: NodeJS.ProcessEnv = {},
  ): Promise<ServiceProcess> {
    const svc = await startServiceProcess(
      path.join(root, `microflack-${name}`),
      {
        ...common,
        ...perService[name],
        ...opts.env?.[name],
        ...env,
      },
      fs.mkdtempSync(path.join(dir, `${name}-`)),
    );
    instances[name].push(svc);
    await routed(name);
    await settle();
    return svc;
  }

  const platform: Platform = {
    url: lb.url,
    etcd,
    redis,
    mariadb,
    instances,
    startService,
    async stopService(name, instance) {
      instances[name] = instances[name].filter((i) => i !== instance);
      await instance.stop();
    },
    logs() {
      return Object.values(instances)
        .flat()
        .map((i) => `--- ${i.proc.name}\n${i.proc.log().slice(-1500)}`)
        .join('\n');
    },
    async stop() {
      await Promise.all(
        Object.values(instances)
          .flat()
          .map((i) => i.stop()),
      );
      await lb.stop();
      await Promise.all([etcd.stop(), redis.stop(), mariadb?.stop()]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all((opts.services ?? ALL_SERVICES).map((name) => startService(name)));
  } catch (err) {
    const logs = platform.logs();
    await platform.stop();
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
  return platform;
}

async function createDatabaseOn(rootUrl: string, prefix: string): Promise<string> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const conn = await mysql.createConnection({ uri: rootUrl, connectTimeout: 5000 });
  try {
    await conn.query(
      `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
    );
  } finally {
    await conn.end();
  }
  return `${rootUrl}/${name}`;
}
