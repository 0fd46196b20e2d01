// Rooms over Socket.IO (issue 16 items 2 and 6, issue 18 item 4): the real messages and users apps
// behind a path-routing stand-in for the LB, two gateway instances on real Redis. A private room's
// events reach its members' sockets only (never a non-member's, an anonymous one's, or an original
// client's that pings without a handshake token); a removed member's sockets leave within a second;
// typing reaches the room's other members, throttled.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { io as connect, type Socket } from 'socket.io-client';
import { createLbClient, createRedis, EVENTS, UpdatedModelEventSchema } from '@microflack/common';
import { bearer, startStack, waitFor, type TestStack } from '@microflack/testkit';
import { startMessagesApp, type TestApp } from '@microflack/testkit/apps';
import request from 'supertest';
import { createApp } from '../src/app.js';
import { createSocketServer } from '../src/gateway.js';

type U = { id: number; nickname: string; token: string };
interface Seen {
  messages: Array<{ id: number; room_id: number; source: string; deleted?: boolean }>;
  typing: Array<{ room_id: number; user_id: number }>;
}

async function startGateway(redis: string, lbUrl: string) {
  const pub = createRedis(redis);
  const sub = createRedis(redis);
  const io = createSocketServer({ lb: createLbClient(lbUrl), pub, sub });
  const server = createApp({ redis: pub }).listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', r));
  io.attach(server);
  return {
    io,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await new Promise<void>((r) => io.close(() => r()));
      server.closeAllConnections();
      pub.disconnect();
      sub.disconnect();
    },
  };
}

describe('rooms over Socket.IO', () => {
  let stack: TestStack;
  let t: TestApp;
  let lb: http.Server;
  let g1: Awaited<ReturnType<typeof startGateway>>;
  let g2: Awaited<ReturnType<typeof startGateway>>;
  let ada: U, bob: U, eve: U;
  const sockets: Socket[] = [];

  before(async () => {
    stack = await startStack();
    t = await startMessagesApp(stack, 'sqlite');
    [ada, bob, eve] = [await t.user('ada'), await t.user('bob'), await t.user('eve')];
    // The LB's routing, by path prefix, to the real apps.
    lb = http.createServer((req, res) =>
      (req.url ?? '').startsWith('/api/users') ? t.usersApp(req, res) : t.app(req, res),
    );
    await new Promise<void>((r) => lb.listen(0, '127.0.0.1', r));
    const lbUrl = `http://127.0.0.1:${(lb.address() as AddressInfo).port}`;
    g1 = await startGateway(stack.redis, lbUrl);
    g2 = await startGateway(stack.redis, lbUrl);
  });
  after(async () => {
    for (const s of sockets) s.close();
    await g1?.close();
    await g2?.close();
    await new Promise<void>((r) => {
      lb.close(() => r());
      lb.closeAllConnections();
    });
    await t.close();
    await stack.stop();
  });

  /** A client; with a token it asks for its rooms. Records what it hears, held to the contract. */
  async function client(url: string, token?: string): Promise<{ socket: Socket; seen: Seen }> {
    const socket = connect(url, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      ...(token ? { auth: { token } } : {}),
    });
    sockets.push(socket);
    const seen: Seen = { messages: [], typing: [] };
    socket.on(EVENTS.updatedModel, (e: unknown) => {
      const parsed = UpdatedModelEventSchema.parse(e);
      if (parsed.class === 'Message') seen.messages.push(parsed.model);
    });
    socket.on(EVENTS.typing, (e: { room_id: number; user_id: number }) => seen.typing.push(e));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return { socket, seen };
  }

  /** Whether the gateway has this user's socket in the Socket.IO room. */
  function inRoom(gw: typeof g1, socket: Socket, room: string): boolean {
    return (
      gw.io
        .of('/')
        .adapter.rooms.get(room)
        ?.has(socket.id as string) ?? false
    );
  }

  it('delivers a private room to its members only, and stops within a second of removal', async () => {
    const created = await request(t.app)
      .post('/api/rooms')
      .set(bearer(ada.token))
      .send({ name: 'secret', private: true });
    const roomId = created.body.id as number;
    const room = `room:${roomId}`;
    const a = await client(g1.url, ada.token);
    const b = await client(g2.url, bob.token);
    const e = await client(g1.url, eve.token);
    const anon = await client(g2.url);
    // An original client: no handshake token, but it pings with one (it is signed in).
    const legacy = await client(g1.url);
    const pinged = await legacy.socket.emitWithAck(EVENTS.pingUser, eve.token);
    assert.deepEqual(pinged, { ok: true });
    await waitFor('ada in the room', () => inRoom(g1, a.socket, room), 3000);
    // Bob is invited after connecting: the membership change joins his socket on the other gateway.
    const invited = await request(t.app)
      .put(`/api/rooms/${roomId}/members/${bob.id}`)
      .set(bearer(ada.token));
    assert.equal(invited.status, 204);
    await waitFor('bob joined live', () => inRoom(g2, b.socket, room), 1000);

    const secret = await request(t.app)
      .post('/api/messages')
      .set(bearer(ada.token))
      .send({ source: 'private plans', room_id: roomId });
    const general = await request(t.app)
      .post('/api/messages')
      .set(bearer(eve.token))
      .send({ source: 'hello everyone' });
    for (const who of [a, b, e, anon, legacy]) {
      await waitFor(
        'the general message',
        () => who.seen.messages.some((m) => m.id === general.body.id),
        3000,
      );
    }
    await waitFor(
      'bob hears the room',
      () => b.seen.messages.some((m) => m.id === secret.body.id),
      3000,
    );
    assert.ok(a.seen.messages.some((m) => m.id === secret.body.id));
    for (const who of [e, anon, legacy]) {
      assert.ok(
        !who.seen.messages.some((m) => m.room_id === roomId),
        'a non-member heard the room',
      );
    }
    // Eve cannot join the Socket.IO room by typing into it.
    const refused = await e.socket.emitWithAck(EVENTS.typing, { room_id: roomId });
    assert.deepEqual(refused, { error: 'not a member', status: 403 });
    const anonTyping = await anon.socket.emitWithAck(EVENTS.typing, { room_id: roomId });
    assert.deepEqual(anonTyping, { error: 'authentication required', status: 401 });
    const badTyping = await a.socket.emitWithAck(EVENTS.typing, { room_id: 'x' });
    assert.equal((badTyping as { status: number }).status, 400);

    // Removal: bob's socket leaves on his gateway within a second of the 204.
    const removedAt = Date.now();
    const removed = await request(t.app)
      .delete(`/api/rooms/${roomId}/members/${bob.id}`)
      .set(bearer(ada.token));
    assert.equal(removed.status, 204);
    await waitFor('bob left', () => !inRoom(g2, b.socket, room), 1000);
    const leftAfterMs = Date.now() - removedAt;
    assert.ok(leftAfterMs < 1000, `left after ${leftAfterMs} ms`);
    const later = await request(t.app)
      .post('/api/messages')
      .set(bearer(ada.token))
      .send({ source: 'after bob left', room_id: roomId });
    await waitFor('ada hears it', () => a.seen.messages.some((m) => m.id === later.body.id), 3000);
    // A general message sent after it, heard by bob, proves the earlier one would have arrived.
    const marker = await request(t.app)
      .post('/api/messages')
      .set(bearer(ada.token))
      .send({ source: 'marker' });
    await waitFor(
      'bob hears general',
      () => b.seen.messages.some((m) => m.id === marker.body.id),
      3000,
    );
    assert.ok(
      !b.seen.messages.some((m) => m.id === later.body.id),
      'a removed member heard the room',
    );
    for (const who of [e, anon, legacy]) {
      assert.ok(!who.seen.messages.some((m) => m.room_id === roomId));
    }
    console.log(`removed member's socket left the room ${leftAfterMs} ms after the 204`);
  });

  it('relays typing to the other members, at most one a second per user', async () => {
    const created = await request(t.app)
      .post('/api/rooms')
      .set(bearer(ada.token))
      .send({ name: 'typing', private: true });
    const roomId = created.body.id as number;
    await request(t.app).put(`/api/rooms/${roomId}/members/${bob.id}`).set(bearer(ada.token));
    const a = await client(g1.url, ada.token);
    const b = await client(g2.url, bob.token);
    const e = await client(g2.url, eve.token);
    await waitFor(
      'joined',
      () => inRoom(g1, a.socket, `room:${roomId}`) && inRoom(g2, b.socket, `room:${roomId}`),
      3000,
    );
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await b.socket.emitWithAck(EVENTS.typing, { room_id: roomId }), {
        ok: true,
      });
    }
    await waitFor('ada sees bob typing', () => a.seen.typing.length > 0, 2000);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(a.seen.typing, [{ room_id: roomId, user_id: bob.id }], 'throttled to one');
    assert.deepEqual(b.seen.typing, [], 'not to the typist');
    assert.deepEqual(e.seen.typing, [], 'not to a non-member');
    await new Promise((r) => setTimeout(r, 1000));
    await b.socket.emitWithAck(EVENTS.typing, { room_id: roomId });
    await waitFor('a second one after a second', () => a.seen.typing.length === 2, 2000);

    // Bob in a second tab, on the other gateway: both tabs typing at once are one typist.
    const b2 = await client(g1.url, bob.token);
    await waitFor('second tab joined', () => inRoom(g1, b2.socket, `room:${roomId}`), 3000);
    await new Promise((r) => setTimeout(r, 1100));
    for (let i = 0; i < 3; i++) {
      await Promise.all([
        b.socket.emitWithAck(EVENTS.typing, { room_id: roomId }),
        b2.socket.emitWithAck(EVENTS.typing, { room_id: roomId }),
      ]);
    }
    await waitFor('a third one', () => a.seen.typing.length === 3, 2000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.seen.typing.length, 3, 'one relayed for two gateways within a second');
  });

  it('shows a deleted message live as a tombstone', async () => {
    const a = await client(g1.url, ada.token);
    const anon = await client(g2.url);
    const m = await request(t.app)
      .post('/api/messages')
      .set(bearer(ada.token))
      .send({ source: 'soon gone' });
    await waitFor('posted', () => anon.seen.messages.some((x) => x.id === m.body.id), 3000);
    assert.equal(
      (await request(t.app).delete(`/api/messages/${m.body.id}`).set(bearer(ada.token))).status,
      204,
    );
    for (const who of [a, anon]) {
      await waitFor(
        'tombstone',
        () => who.seen.messages.some((x) => x.id === m.body.id && x.deleted),
        3000,
      );
    }
    const tomb = anon.seen.messages.find((x) => x.id === m.body.id && x.deleted);
    assert.equal(tomb?.source, '');
  });
});
