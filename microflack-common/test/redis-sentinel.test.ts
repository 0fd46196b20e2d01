// REDIS through Sentinels (sentinel://host:port,.../<name>): real Redis servers and a real
// Sentinel; a failover the Sentinel makes while the old primary is still up and reachable must move
// every client (commands and subscriptions) to the new primary.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../src/config.js';
import { createEvents, createRedis, redisTarget, ReplayBuffer } from '../src/events.js';
import {
  startRedis,
  startTcpProxy,
  startSentinel,
  waitFor,
  type RedisServer,
  type SentinelServer,
} from '@microflack/testkit';
import { subscribe } from '@microflack/testkit/socketio';
import { user } from './fixtures/models.js';

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

describe('ReplayBuffer', () => {
  it('keeps events until a check begun after them confirms the server, bounded by bytes', () => {
    const buffer = new ReplayBuffer(10);
    buffer.add('c', 'aaaa', 100);
    buffer.add('c', 'bbbb', 200);
    buffer.confirmed(150);
    assert.deepEqual(
      buffer.take().map((e) => e.message),
      ['bbbb'],
    );
    assert.equal(buffer.size, 0);
    // 4 + 4 + 4 bytes over a bound of 10: the oldest goes.
    for (const [m, at] of [
      ['1111', 1],
      ['2222', 2],
      ['3333', 3],
    ] as const)
      buffer.add('c', m, at);
    assert.deepEqual(
      buffer.take().map((e) => e.message),
      ['2222', '3333'],
    );
    const off = new ReplayBuffer(0);
    off.add('c', 'x');
    assert.equal(off.size, 0);
  });
});

describe('REDIS through Sentinels', () => {
  let primary: RedisServer;
  let replica: RedisServer;
  let sentinel: SentinelServer;
  const clients: Redis[] = [];
  /** The test's own connection to the Sentinel. */
  let sentinelClient: Redis;

  /** The port of the primary the Sentinel names now. */
  const primaryNow = async () =>
    ((await sentinelClient.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mf')) as string[])[1];

  /** Has the Sentinel fail over, once it sees the replica in sync; the new primary's port. */
  async function failover(): Promise<number> {
    const before = await primaryNow();
    await waitFor('replication to settle', () => replicaReady(sentinel.port), 15000, 200);
    await sentinelClient.call('SENTINEL', 'FAILOVER', 'mf');
    await waitFor(
      'the Sentinel to name the other server',
      async () => (await primaryNow()) !== before,
      15000,
      100,
    );
    return Number(await primaryNow());
  }

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
    sentinelClient = new Redis({ port: sentinel.port, host: '127.0.0.1' });
    clients.push(sentinelClient);
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
    assert.equal(await failover(), replica.port, 'the Sentinel names the replica');
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
    const cmd = createRedis(sentinel.url, { failoverDetector: false });
    const sub = createRedis(sentinel.url, { failoverDetector: false });
    clients.push(cmd, sub);
    const got: string[] = [];
    await sub.subscribe('mf-test-2');
    sub.on('message', (_ch: string, m: string) => got.push(m));
    await cmd.set('x', '1');
    const newPort = await failover();
    const t0 = Date.now();
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
  it('sends again the events that went to a server the Sentinels no longer name, once it moves', async () => {
    // The cluster test's hole: a publisher that cannot ask the Sentinels stays on its server after
    // a failover and its PUBLISHes reach no subscriber of the new primary. Here the publisher's
    // Sentinel is behind a proxy that is cut while the failover happens.
    const proxy = await startTcpProxy(sentinel.port);
    const events = createEvents(`sentinel://127.0.0.1:${proxy.port}/mf`);
    let onNew: Awaited<ReturnType<typeof subscribe>> | undefined;
    try {
      const before = await primaryNow();
      const onOld = await subscribe(`127.0.0.1:${before}`);
      try {
        events.emitUpdatedModel('User', user(1));
        await onOld.waitForEvent('the first event on the primary', (e) => e.model.id === 1);
        // A check of the primary (every second) confirms it: it is not sent again later.
        await new Promise((r) => setTimeout(r, 2500));
      } finally {
        await onOld.close();
      }
      proxy.cut();
      onNew = await subscribe(`127.0.0.1:${await failover()}`);
      for (const id of [2, 3, 4]) events.emitUpdatedModel('User', user(id));
      // Sent to the old server: nobody on the new primary hears them.
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(
        onNew.events.map((e) => e.model.id),
        [],
        'events reached the new primary while the publisher was on the old server',
      );
      proxy.restore();
      const t0 = Date.now();
      for (const id of [2, 3, 4]) {
        await onNew.waitForEvent(
          `event ${id} sent again on the new primary`,
          (e) => e.model.id === id,
        );
      }
      console.log(
        `  unconfirmed events on the new primary ${Date.now() - t0} ms after the Sentinels answered again`,
      );
      // Confirmed there: a later event is heard once, and nothing older comes again.
      events.emitUpdatedModel('User', user(5));
      await onNew.waitForEvent('a later event', (e) => e.model.id === 5);
      assert.deepEqual(onNew.events.map((e) => e.model.id).sort(), [2, 3, 4, 5]);
    } finally {
      await onNew?.close();
      await events.close();
      await proxy.close();
    }
  });
  it('asks a Sentinel that stops answering on a new connection', async () => {
    // After a network cut heals, a connection that was open through it stays 'ready' but carries
    // nothing until TCP's next retransmission, seconds later: the primary check must not wait.
    const proxy = await startTcpProxy(sentinel.port);
    const cmd = createRedis(`sentinel://127.0.0.1:${proxy.port}/mf`);
    clients.push(cmd);
    try {
      await cmd.set('frozen', '1');
      // The check has its Sentinel connection open (it asks every second).
      await new Promise((r) => setTimeout(r, 1500));
      proxy.freeze();
      const newPort = await failover();
      await waitFor(
        'the client to be on the new primary',
        async () =>
          (cmd as unknown as { stream?: { remotePort?: number } }).stream?.remotePort === newPort,
        // Before the Sentinel's clean-up of the demoted server (about 10 s) would move it anyway.
        5000,
        100,
      );
    } finally {
      await proxy.close();
    }
  });
});
