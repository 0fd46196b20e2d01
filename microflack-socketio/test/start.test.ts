// A socketio instance joins the load balancer only once it hears events.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createEtcd, parseHostPort, upstreamKey, type Etcd } from '@microflack/common';
import {
  sharedBackends,
  startBuiltService,
  startRedis,
  waitFor,
  type RedisServer,
  type ServiceProcess,
} from '@microflack/testkit';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PAUSE_MS = 3000;

describe('socketio at start', () => {
  let redis: RedisServer;
  let control: Redis;
  let etcd: Etcd;
  let svc: ServiceProcess | undefined;
  before(async () => {
    redis = await startRedis();
    control = new Redis(parseHostPort(redis.hostPort));
    etcd = createEtcd([(await sharedBackends()).etcd]);
  });
  after(async () => {
    await svc?.stop();
    control.disconnect();
    etcd.close();
    await redis.stop();
  });

  it('registers only once its Redis subscription is in place', async () => {
    const instance = `socketio-${randomBytes(4).toString('hex')}`;
    // Redis holds every client's commands for a while: the adapter's subscription waits too.
    await control.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL');
    const paused = Date.now();
    const started = startBuiltService(packageDir, {
      env: { REDIS: redis.hostPort, INSTANCE_NAME: instance },
    });
    let registeredAt = 0;
    await waitFor(
      'the instance registered',
      async () => {
        if ((await etcd.get(upstreamKey('socketio', instance)).string()) === null) return false;
        registeredAt = Date.now();
        return true;
      },
      20000,
      20,
    );
    svc = await started;
    assert.ok(
      registeredAt - paused >= PAUSE_MS - 100,
      `registered ${registeredAt - paused} ms into a ${PAUSE_MS} ms pause of Redis`,
    );
    const clients = String(await control.client('LIST'));
    const sub = clients.split('\n').find((l) => l.includes(` name=${instance}-sub `));
    assert.match(sub ?? '', /\bpsub=[1-9]/, `its subscriber holds the adapter's pattern: ${sub}`);
  });
});
