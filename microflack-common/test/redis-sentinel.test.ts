// REDIS through Sentinels (sentinel://host:port,.../<name>): real Redis servers and a real
// Sentinel; a failover the Sentinel makes while the old primary is still up and reachable must move
// every client (commands and subscriptions) to the new primary.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createRedis, redisTarget } from '../src/events.js';
import {
  startRedis,
  startSentinel,
  waitFor,
  type RedisServer,
  type SentinelServer,
} from '@microflack/testkit';

/** GET on one server, with a connection of its own. */
async function getOn(port: number, key: string): Promise<string | null> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
  try {
    await r.connect();
    return await r.get(key);
  } finally {
    r.disconnect();
  }
}

/**
 * The Sentinel has the one replica, connected (flags just "slave"): listed is not enough, just
 * after discovery it is "slave,disconnected" and FAILOVER answers NOGOODSLAVE.
 */
async function replicaReady(port: number): Promise<boolean> {
  const s = new Redis({ port, host: '127.0.0.1' });
  try {
    const replicas = (await s.call('SENTINEL', 'REPLICAS', 'mf')) as string[][];
    const r = replicas.length === 1 ? replicas[0] : undefined;
    if (!r) return false;
    const field = (name: string) => r[r.indexOf(name) + 1];
    return field('flags') === 'slave';
  } finally {
    s.disconnect();
  }
}

describe('REDIS through Sentinels', () => {
  let primary: RedisServer;
  let replica: RedisServer;
  let sentinel: SentinelServer;
  const clients: Redis[] = [];

  before(async () => {
    [primary, replica] = await Promise.all([startRedis(), startRedis()]);
    const admin = new Redis({ port: replica.port, host: '127.0.0.1' });
    await admin.replicaof('127.0.0.1', primary.port);
    await waitFor('the replica to sync', async () =>
      (await admin.info('replication')).includes('master_link_status:up'),
    );
    admin.disconnect();
    sentinel = await startSentinel(primary.port);
    await waitFor('the Sentinel to see the replica', () => replicaReady(sentinel.port), 15000);
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all([sentinel?.stop(), primary?.stop(), replica?.stop()]);
  });

  it('parses the sentinel form, and refuses a malformed one', () => {
    assert.deepEqual(redisTarget('sentinel://10.0.0.1:26379,h2:26380/mymaster'), {
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: 'h2', port: 26380 },
      ],
      name: 'mymaster',
    });
    assert.deepEqual(redisTarget('127.0.0.1:6379'), { host: '127.0.0.1', port: 6379 });
    assert.equal(parseConfig({}, { REDIS: 'sentinel://a:1,b:2/m' }).REDIS, 'sentinel://a:1,b:2/m');
    for (const bad of [
      'sentinel://a:1',
      'sentinel://a/m',
      'sentinel://a:1,/m',
      'sentinel:/a:1/m',
    ]) {
      assert.throws(() => parseConfig({}, { REDIS: bad }), /REDIS/, bad);
    }
  });

  it('follows a failover: commands and subscriptions reach the new primary', async () => {
    const cmd = createRedis(sentinel.url);
    const sub = createRedis(sentinel.url);
    clients.push(cmd, sub);
    const got: string[] = [];
    await sub.subscribe('mf-test');
    sub.on('message', (_ch: string, m: string) => got.push(m));
    await cmd.set('before', '1');
    assert.equal((await cmd.role())[0], 'master');
    assert.equal(await getOn(primary.port, 'before'), '1');

    // A failover while the old primary stays up: nothing closes the clients' connections to it
    // but the Sentinel's clean-up of the demoted server and the clients' own check.
    const s = new Redis({ port: sentinel.port, host: '127.0.0.1' });
    clients.push(s);
    await waitFor('a replica the Sentinel would promote', () => replicaReady(sentinel.port), 15000);
    await s.call('SENTINEL', 'FAILOVER', 'mf');
    await waitFor(
      'the Sentinel to name the replica',
      async () =>
        ((await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mf')) as string[])[1] ===
        String(replica.port),
      15000,
      100,
    );
    const t0 = Date.now();
    await waitFor(
      'the client to write to the new primary',
      async () => {
        try {
          await cmd.set('after', '1');
          return (await getOn(replica.port, 'after')) === '1';
        } catch {
          return false;
        }
      },
      15000,
      100,
    );
    await waitFor(
      'the subscription to follow',
      async () => {
        await cmd.publish('mf-test', 'hello');
        return got.includes('hello');
      },
      15000,
      200,
    );
    console.log(`  clients on the new primary ${Date.now() - t0} ms after the Sentinel named it`);
  });

  it('moves clients off a server that stops being the primary even unannounced (a subscriber too)', async () => {
    // Only the clients' own check can notice (the default; ioredis's failover detector is off, since
    // it could end a reconnecting client for good), as for an old primary that comes back and is
    // made a replica while clients are connected to it.
    const s = new Redis({ port: sentinel.port, host: '127.0.0.1' });
    clients.push(s);
    const primaryNow = async () =>
      ((await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mf')) as string[])[1];
    const before = await primaryNow();
    const cmd = createRedis(sentinel.url, { failoverDetector: false });
    const sub = createRedis(sentinel.url, { failoverDetector: false });
    clients.push(cmd, sub);
    const got: string[] = [];
    await sub.subscribe('mf-test-2');
    sub.on('message', (_ch: string, m: string) => got.push(m));
    await cmd.set('x', '1');
    await waitFor('replication to settle', () => replicaReady(sentinel.port), 15000, 200);
    await s.call('SENTINEL', 'FAILOVER', 'mf');
    await waitFor(
      'the Sentinel to name the other server',
      async () => (await primaryNow()) !== before,
      15000,
      100,
    );
    const t0 = Date.now();
    const newPort = Number(await primaryNow());
    const direct = new Redis({ port: newPort, host: '127.0.0.1' });
    clients.push(direct);
    await waitFor(
      'the subscriber to hear a PUBLISH made on the new primary',
      async () => {
        await direct.publish('mf-test-2', 'after');
        return got.includes('after');
      },
      // Well before the Sentinel's own clean-up of the demoted server (CLIENT KILL, about 10 s
      // later here), which is no help to a server demoted after a crash and boot.
      5000,
      200,
    );
    await waitFor(
      'the client to be on the new primary',
      async () =>
        (cmd as unknown as { stream?: { remotePort?: number } }).stream?.remotePort === newPort,
      5000,
      100,
    );
    console.log(
      `  unannounced: clients on the new primary ${Date.now() - t0} ms after the Sentinel named it`,
    );
  });
});
