// Each Socket.IO event against real Redis, with a local HTTP server standing in for the load
// balancer so that what the gateway sends to users and messages can be checked exactly.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Socket } from 'socket.io-client';
import { connectClient } from '@microflack/testkit/socketio';
import {
  createEvents,
  createLbClient,
  createRedis,
  type Events,
  type Message,
} from '@microflack/common';
import { startRedis, waitFor, type RedisServer } from '@microflack/testkit';
import { createApp } from '../src/app.js';
import { createSocketServer, MAX_PAYLOAD_BYTES } from '../src/gateway.js';

interface Call {
  method: string;
  url: string;
  authorization?: string;
  idempotencyKey?: string;
  body: string;
}

/** Answers like users and messages do: known tokens pass, every other one gets 401. */
async function startStandInLb() {
  const calls: Call[] = [];
  const valid = new Set<string>();
  let nextId = 1;
  /** The answer each Idempotency-Key got, as the messages service replays it. */
  const byKey = new Map<string, unknown>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      calls.push({
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: req.headers.authorization,
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
        body,
      });
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const json = (status: number, value?: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(value === undefined ? '' : JSON.stringify(value));
      };
      if (!token || !valid.has(token)) return json(401, { error: 'authentication required' });
      if (req.url === '/api/users/me' && (req.method === 'PUT' || req.method === 'DELETE')) {
        // Tokens named slow- keep their requests waiting, to fill a client's in-flight allowance.
        if (token.startsWith('slow-')) return void setTimeout(() => json(204), 500);
        return json(204);
      }
      if (req.url === '/api/messages' && req.method === 'POST') {
        const data = JSON.parse(body) as { source: unknown };
        if (typeof data.source !== 'string' || data.source === '') {
          return json(400, { error: 'source is required' });
        }
        const key = req.headers['idempotency-key'] as string | undefined;
        if (key && byKey.has(key)) return json(201, byKey.get(key));
        const message = {
          id: nextId++,
          source: data.source,
          html: `<p>${data.source}</p>`,
          user_id: 1,
        };
        if (key) byKey.set(key, message);
        // Tokens named lost- write the message, then lose the first answer (an instance killed
        // between its commit and its 201).
        if (
          token.startsWith('lost-') &&
          calls.filter((c) => c.idempotencyKey === key).length === 1
        ) {
          return void req.socket.destroy();
        }
        return json(201, message);
      }
      json(404, { error: 'not found' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    valid,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function startGateway(redisHostPort: string, lbUrl: string) {
  const pub = createRedis(redisHostPort);
  const sub = createRedis(redisHostPort);
  const io = createSocketServer({ lb: createLbClient(lbUrl), pub, sub });
  const server = createApp({ redis: pub }).listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', r));
  io.attach(server);
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await new Promise<void>((r) => io.close(() => r()));
      server.closeAllConnections();
      pub.disconnect();
      sub.disconnect();
    },
  };
}

const clients: Socket[] = [];
async function client(url: string, transports = ['websocket']): Promise<Socket> {
  const socket = await connectClient(url, transports);
  clients.push(socket);
  return socket;
}

function nextEvent(socket: Socket, name: string, timeoutMs = 3000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} in ${timeoutMs} ms`)), timeoutMs);
    socket.once(name, (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

/** Every event a socket receives, to prove that nothing reaches the wrong client. */
function record(socket: Socket): string[] {
  const seen: string[] = [];
  socket.onAny((event: string) => seen.push(event));
  return seen;
}

describe('socketio gateway', () => {
  let lb: Awaited<ReturnType<typeof startStandInLb>>;
  let one: Awaited<ReturnType<typeof startGateway>>;
  let two: Awaited<ReturnType<typeof startGateway>>;
  let events: Events;
  let ownRedis: RedisServer;

  before(async () => {
    // A Redis of its own: the tests check that clients get no updated_model they should not,
    // and other test files publish theirs through the shared one.
    ownRedis = await startRedis();
    const redis = ownRedis.hostPort;
    lb = await startStandInLb();
    one = await startGateway(redis, lb.url);
    two = await startGateway(redis, lb.url);
    events = createEvents(redis);
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all([one.close(), two.close()]);
    await events.close();
    await lb.close();
    await ownRedis.stop();
  });

  function token(prefix = 'tok'): string {
    const t = `${prefix}-${randomBytes(6).toString('hex')}`;
    lb.valid.add(t);
    return t;
  }

  it('ping_user marks the user online with PUT /api/users/me and acknowledges', async () => {
    const t = token();
    const socket = await client(one.url);
    const answer = await socket.timeout(3000).emitWithAck('ping_user', t);
    assert.deepEqual(answer, { ok: true });
    assert.ok(
      lb.calls.some(
        (c) => c.method === 'PUT' && c.url === '/api/users/me' && c.authorization === `Bearer ${t}`,
      ),
    );
  });

  it('ping_user without an acknowledgement still calls users (the original client sends none)', async () => {
    const t = token();
    const socket = await client(one.url);
    socket.emit('ping_user', t);
    await waitFor(
      'PUT',
      () => lb.calls.some((c) => c.method === 'PUT' && c.authorization === `Bearer ${t}`),
      3000,
    );
  });

  it('ping_user with a token users refuses emits expired_token to that client only', async () => {
    const socket = await client(one.url);
    const bystander = await client(two.url);
    const seen = record(bystander);
    const expired = nextEvent(socket, 'expired_token');
    const answer = await socket.timeout(3000).emitWithAck('ping_user', 'revoked-token');
    await expired;
    assert.deepEqual(answer, { error: 'authentication required', status: 401 });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(seen, []);
  });

  it('a token revoked after use gets expired_token on the next event', async () => {
    const t = token();
    const socket = await client(one.url);
    assert.deepEqual(await socket.timeout(3000).emitWithAck('ping_user', t), { ok: true });
    lb.valid.delete(t);
    const expired = nextEvent(socket, 'expired_token');
    socket.emit('post_message', { source: 'after revocation' }, t);
    await expired;
  });

  it('post_message posts to /api/messages and acknowledges with the created message', async () => {
    const t = token();
    const socket = await client(one.url);
    const answer = (await socket
      .timeout(3000)
      .emitWithAck('post_message', { source: 'hi *there*' }, t)) as {
      id: number;
      source: string;
    };
    assert.equal(answer.source, 'hi *there*');
    assert.equal(typeof answer.id, 'number');
    const call = lb.calls.find((c) => c.method === 'POST' && c.authorization === `Bearer ${t}`);
    assert.deepEqual(JSON.parse(call?.body ?? '{}'), { source: 'hi *there*' });
  });

  it('post_message sends every post with an Idempotency-Key, and a lost answer again with the same key', async () => {
    const t = token('lost-');
    const socket = await client(one.url);
    const answer = (await socket
      .timeout(5000)
      .emitWithAck('post_message', { source: 'once', idempotency_key: 'draft-42' }, t)) as {
      id: number;
      source: string;
    };
    assert.equal(answer.source, 'once');
    const posts = lb.calls.filter((c) => c.method === 'POST' && c.authorization === `Bearer ${t}`);
    assert.deepEqual(
      posts.map((c) => c.idempotencyKey),
      ['draft-42', 'draft-42'],
      'the lost answer was asked for again, with the same key',
    );
    // The key travels as the header only, not in the message's body.
    for (const c of posts) assert.deepEqual(JSON.parse(c.body), { source: 'once' });
    // Without a key of the client's, the gateway makes one for the post (and its retries).
    const other = token('lost-');
    const second = (await socket
      .timeout(5000)
      .emitWithAck('post_message', { source: 'keyless' }, other)) as { id: number };
    const keys = lb.calls
      .filter((c) => c.method === 'POST' && c.authorization === `Bearer ${other}`)
      .map((c) => c.idempotencyKey);
    assert.equal(keys.length, 2);
    assert.match(keys[0] ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(keys[1], keys[0]);
    assert.equal(typeof second.id, 'number');
    // A malformed key is refused before any call.
    const before = lb.calls.length;
    const refused = await socket
      .timeout(3000)
      .emitWithAck('post_message', { source: 'x', idempotency_key: 'has space' }, token());
    assert.deepEqual(refused, {
      error: "idempotency_key must be 1 to 64 letters, digits, '-', '_', '.' or ':'",
      status: 400,
    });
    assert.equal(lb.calls.length, before);
  });

  it('post_message passes the service error back in the acknowledgement', async () => {
    const socket = await client(one.url);
    const answer = await socket.timeout(3000).emitWithAck('post_message', { source: '' }, token());
    assert.deepEqual(answer, { error: 'source is required', status: 400 });
  });

  it('post_message with a refused token emits expired_token', async () => {
    const socket = await client(one.url);
    const expired = nextEvent(socket, 'expired_token');
    const answer = await socket.timeout(3000).emitWithAck('post_message', { source: 'x' }, 'nope');
    await expired;
    assert.equal((answer as { status: number }).status, 401);
  });

  it('disconnect signs the user out with the token remembered from ping_user', async () => {
    const t = token();
    const socket = await client(one.url);
    await socket.timeout(3000).emitWithAck('ping_user', t);
    socket.close();
    await waitFor(
      'DELETE',
      () => lb.calls.some((c) => c.method === 'DELETE' && c.authorization === `Bearer ${t}`),
      3000,
    );
  });

  it('disconnect without a ping makes no call', async () => {
    const before = lb.calls.length;
    const socket = await client(one.url);
    socket.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(lb.calls.length, before);
  });

  it('delivers one updated_model from Redis to clients on both instances, over WebSocket and polling', async () => {
    const onOne = await client(one.url);
    const onTwo = await client(two.url, ['polling']);
    const id = 1 + Math.floor(Math.random() * 1e9);
    const matching = (s: Socket) =>
      new Promise<unknown>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no updated_model')), 5000);
        s.on('updated_model', (data: { model?: { id?: number } }) => {
          if (data.model?.id !== id) return;
          clearTimeout(timer);
          resolve(data);
        });
      });
    const got = [matching(onOne), matching(onTwo)];
    const model: Message = {
      id,
      room_id: 1,
      created_at: 1,
      updated_at: 1,
      source: 'x',
      html: '<p>x</p>',
      user_id: 1,
      _links: { self: `/api/messages/${id}`, user: '/api/users/1' },
    };
    events.emitUpdatedModel('Message', model);
    const [a, b] = await Promise.all(got);
    assert.deepEqual(a, { class: 'Message', model });
    assert.deepEqual(b, a);
  });

  describe('malformed events', () => {
    const bad: Array<[string, unknown[], string]> = [
      ['ping_user', [], 'token required'],
      ['ping_user', [42], 'token required'],
      ['ping_user', [{ token: 'x' }], 'token required'],
      ['ping_user', ['a\r\nX-Evil: 1'], 'malformed token'],
      ['ping_user', ['x'.repeat(5000)], 'malformed token'],
      ['post_message', ['just a string', 'tok'], 'message data must be an object'],
      ['post_message', [null, 'tok'], 'message data must be an object'],
      ['post_message', [['source'], 'tok'], 'message data must be an object'],
      ['post_message', [{ source: 7 }, 'tok'], 'message source must be a string'],
      ['post_message', [{ source: 'hi' }], 'token required'],
      ['post_message', [{ source: 'hi' }, 12], 'token required'],
    ];
    for (const [event, args, error] of bad) {
      it(`${event}(${JSON.stringify(args).slice(0, 40)}) answers 400 "${error}" without calling a service`, async () => {
        const socket = await client(one.url);
        const before = lb.calls.length;
        const answer = await socket.timeout(3000).emitWithAck(event, ...args);
        assert.deepEqual(answer, { error, status: 400 });
        assert.equal(lb.calls.length, before);
      });
    }

    it('drops malformed events without an acknowledgement and keeps serving the client', async () => {
      const socket = await client(one.url);
      const bystander = await client(one.url);
      const seen = record(bystander);
      const before = lb.calls.length;
      socket.emit('ping_user');
      socket.emit('ping_user', 1, 2, 3);
      socket.emit('post_message');
      socket.emit('post_message', { source: {} }, 'tok');
      socket.emit('no_such_event', 'x');
      const answer = await socket.timeout(3000).emitWithAck('ping_user', token());
      assert.deepEqual(answer, { ok: true });
      assert.equal(lb.calls.length, before + 1);
      assert.ok(socket.connected);
      assert.deepEqual(seen, []);
    });

    for (const transport of ['websocket', 'polling']) {
      it(`closes a ${transport} client sending more than ${MAX_PAYLOAD_BYTES / 1024} KB; others are unaffected`, async () => {
        const socket = await client(one.url, [transport]);
        const bystander = await client(one.url);
        const seen = record(bystander);
        const before = lb.calls.length;
        const gone = nextEvent(socket, 'disconnect', 5000);
        socket.emit('post_message', { source: 'x'.repeat(MAX_PAYLOAD_BYTES + 1024) }, token());
        await gone;
        assert.equal(lb.calls.length, before);
        assert.deepEqual(await bystander.timeout(3000).emitWithAck('ping_user', token()), {
          ok: true,
        });
        assert.deepEqual(seen, []);
        const res = await fetch(`${one.url}/healthz`);
        assert.equal(res.status, 200);
      });
    }

    it('refuses an event while too many are waiting on the services', async () => {
      const socket = await client(one.url);
      const t = token('slow');
      const answers = await Promise.all(
        Array.from({ length: 12 }, () => socket.timeout(5000).emitWithAck('ping_user', t)),
      );
      const refused = answers.filter((a) => (a as { status?: number }).status === 429);
      assert.equal(refused.length, 4, 'the pings over the allowance of 8 are refused');
      assert.ok(answers.filter((a) => (a as { ok?: boolean }).ok).length >= 1, 'some pings served');
    });
  });

  it('reports Redis in /healthz', async () => {
    const res = await fetch(`${one.url}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { checks: unknown }).checks, { redis: 'ok' });
  });
});
