import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { io as connect, type Socket } from 'socket.io-client';
import { Redis } from 'ioredis';
import { createEvents, createRedis, EVENT_CONFIRM_MS } from '../src/events.js';
import { message, user } from './fixtures/models.js';
import { registry } from '../src/metrics.js';
import { sharedBackends, startRedis, startSentinel, startTcpProxy } from '@microflack/testkit';
import { adapterServer } from '@microflack/testkit/socketio';

function nextEvent(socket: Socket, name: string, timeoutMs = 3000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} in ${timeoutMs} ms`)), timeoutMs);
    socket.once(name, (data: unknown) => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

describe('events', () => {
  let redis: string;
  before(async () => {
    redis = (await sharedBackends()).redis;
  });

  it('emitUpdatedModel reaches a client connected to a Socket.IO server with the Redis adapter', async () => {
    const srv = await adapterServer(redis);
    const client = connect(srv.url, { transports: ['websocket'] });
    await nextEvent(client, 'connect');
    const events = createEvents(redis);
    // Other test files publish through the same Redis: ours is the one with this source.
    const source = `hi ${Date.now()} ${Math.random()}`;
    const received = new Promise<unknown>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error('no updated_model in 5 s')), 5000);
      client.on('updated_model', (data: { model?: { source?: string } }) => {
        if (data?.model?.source !== source) return;
        clearTimeout(deadline);
        resolve(data);
      });
    });
    // The adapter subscribes to Redis asynchronously; publish until the subscription is live.
    const timer = setInterval(() => events.emitUpdatedModel('Message', message(1, source)), 100);
    events.emitUpdatedModel('Message', message(1, source));
    try {
      assert.deepEqual(await received, { class: 'Message', model: message(1, source) });
    } finally {
      clearInterval(timer);
    }
    client.close();
    await events.close();
    await srv.close();
  });

  it('with REDIS sentinel://host:port/<name>, finds the primary through Sentinel and sends events there', async () => {
    const primary = await startRedis();
    const sentinel = await startSentinel(primary.port, 'mfprimary');
    const target = sentinel.url;
    const client = createRedis(target);
    const srv = await adapterServer(primary.hostPort);
    const socket = connect(srv.url, { transports: ['websocket'] });
    const connected = nextEvent(socket, 'connect');
    const events = createEvents(target);
    try {
      await client.set('mf:sentinel-test', 'through sentinel');
      // Written through Sentinel, read on the primary itself: the client was sent there.
      const direct = createRedis(primary.hostPort);
      assert.equal(await direct.get('mf:sentinel-test'), 'through sentinel');
      direct.disconnect();
      await connected;
      const received = nextEvent(socket, 'updated_model', 5000);
      const timer = setInterval(() => events.emitUpdatedModel('User', user(7)), 100);
      try {
        assert.deepEqual(await received, { class: 'User', model: user(7) });
      } finally {
        clearInterval(timer);
      }
    } finally {
      socket.close();
      client.disconnect();
      await events.close();
      await srv.close();
      await sentinel.stop();
      await primary.stop();
    }
  });

  it('emitUpdatedModel resolves once Redis has taken the event, and after EVENT_CONFIRM_MS at most', async () => {
    // The event must be in Redis before a change is answered (a process killed between its answer
    // and its event made a change nobody heard of): held on its way to Redis, it holds the caller.
    const own = await startRedis();
    const proxy = await startTcpProxy(Number(own.hostPort.split(':')[1]));
    const heard: string[] = [];
    const sub = new Redis(own.hostPort);
    sub.on('pmessageBuffer', (_p: Buffer, _c: Buffer, msg: Buffer) =>
      heard.push(msg.toString('latin1')),
    );
    await sub.psubscribe('socket.io#*');
    const heardWithin = async (n: number, ms: number) => {
      const deadline = Date.now() + ms;
      while (heard.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(heard.length, n);
    };
    const events = createEvents(`127.0.0.1:${proxy.port}`);
    try {
      await events.ping();
      await events.emitUpdatedModel('User', user(1));
      assert.equal(heard.length, 1);

      proxy.freeze();
      let done = false;
      const taken = events.emitUpdatedModel('User', user(2)).then(() => (done = true));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(done, false, 'resolved while the event was held on its way to Redis');
      assert.equal(heard.length, 1);
      proxy.thaw();
      await taken;
      // Redis answers the publisher and passes the event to subscribers in the same step, in
      // either order on the wire.
      await heardWithin(2, 1000);

      // Held for longer than the bound: the caller goes on after EVENT_CONFIRM_MS, and the event
      // still goes out when the connection carries bytes again.
      proxy.freeze();
      const t0 = Date.now();
      await events.emitUpdatedModel('User', user(3));
      const waited = Date.now() - t0;
      assert.ok(waited >= EVENT_CONFIRM_MS - 20, `waited ${waited} ms`);
      proxy.thaw();
      await heardWithin(3, 5000);
    } finally {
      await events.close();
      sub.disconnect();
      await proxy.close();
      await own.stop();
    }
  });

  it('is a no-op without REDIS', async () => {
    const events = createEvents(undefined);
    await events.emitUpdatedModel('User', user(1));
    await events.close();
  });

  it('with Redis down, the call returns at once and the failure is counted in metrics', async () => {
    const own = await startRedis();
    const events = createEvents(own.hostPort);
    await events.ping();
    await own.stop();
    const before =
      (await registry.getSingleMetric('events_emit_failures_total')?.get())?.values[0]?.value ?? 0;
    const t0 = Date.now();
    // Not connected: no wait for Redis to take it (the client's queue keeps it meanwhile).
    await events.emitUpdatedModel('User', user(2));
    assert.ok(Date.now() - t0 < 50, 'emit does not block');
    const deadline = Date.now() + 30000;
    let after = before;
    while (after === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      after =
        (await registry.getSingleMetric('events_emit_failures_total')?.get())?.values[0]?.value ??
        0;
    }
    assert.equal(after, before + 1);
    await events.close();
  });
});
