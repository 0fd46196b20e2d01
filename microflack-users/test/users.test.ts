import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import { createEvents, type Knex } from '@microflack/common';
import {
  answeredAfterThaw,
  basic,
  bearer,
  makeToken,
  startEtcd,
  startStack,
  startTcpProxy,
  waitFor,
  type EtcdServer,
  type TestStack,
} from '@microflack/testkit';
import { createApp } from '../src/app.js';
import { DB_KINDS, nick, openTestDb, usersApp } from '@microflack/testkit/apps';
import { subscribe } from '@microflack/testkit/socketio';

for (const kind of DB_KINDS) {
  describe(`users on ${kind}`, () => {
    let stack: TestStack;
    let app: Express;
    let db: Knex;
    let events: Awaited<ReturnType<typeof subscribe>>;

    before(async () => {
      stack = await startStack();
      ({ app, db } = await usersApp(stack, kind));
      events = await subscribe(stack.redis);
    });
    after(async () => {
      await events.close();
      await db.destroy();
      await stack.stop();
    });

    async function createUser(nickname = nick(), password = 'dog') {
      const res = await request(app).post('/api/users').send({ nickname, password }).expect(201);
      return { id: res.body.id as number, nickname, password, body: res.body };
    }

    describe('POST /api/users', () => {
      it('answers 201 with Location and the user, without the hash, and emits updated_model', async () => {
        const nickname = nick('ada');
        const t0 = Math.floor(Date.now() / 1000);
        const res = await request(app).post('/api/users').send({ nickname, password: 'dog' });
        assert.equal(res.status, 201);
        assert.equal(res.headers.location, `/api/users/${res.body.id}`);
        assert.deepEqual(Object.keys(res.body).sort(), [
          '_links',
          'created_at',
          'id',
          'last_seen_at',
          'nickname',
          'online',
          'updated_at',
        ]);
        assert.equal(res.body.nickname, nickname);
        assert.equal(res.body.online, false);
        assert.ok(Number.isInteger(res.body.created_at) && res.body.created_at >= t0);
        assert.equal(res.body.updated_at, res.body.created_at);
        assert.deepEqual(res.body._links, {
          self: `/api/users/${res.body.id}`,
          messages: `/api/messages?user_id=${res.body.id}`,
          tokens: '/api/tokens',
        });
        assert.doesNotMatch(res.text, /\$2[aby]\$/);
        await waitFor('User event', () => events.forUser(nickname).length === 1, 3000);
        assert.deepEqual(events.forUser(nickname)[0], res.body);
      });

      it('stores the password as a bcrypt hash of cost 10 or more', async () => {
        const u = await createUser();
        const row = await db('users').where({ id: u.id }).first();
        assert.match(row.password_hash, /^\$2[aby]\$(1\d)\$/);
        assert.notEqual(row.password_hash, u.password);
      });

      it('answers 400 when the nickname is taken', async () => {
        const u = await createUser();
        const res = await request(app)
          .post('/api/users')
          .send({ nickname: u.nickname, password: 'cat' });
        assert.equal(res.status, 400);
        assert.match(res.body.error, /taken/);
      });

      it('answers 400 to one of two racing creations of the same nickname', async () => {
        const nickname = nick('race');
        const results = await Promise.all(
          [1, 2, 3].map(() => request(app).post('/api/users').send({ nickname, password: 'x' })),
        );
        assert.deepEqual(results.map((r) => r.status).sort(), [201, 400, 400]);
      });

      const bad: Array<[string, unknown]> = [
        ['no body', undefined],
        ['missing nickname', { password: 'x' }],
        ['missing password', { nickname: 'someone' }],
        ['empty nickname', { nickname: '', password: 'x' }],
        ['empty password', { nickname: 'someone', password: '' }],
        ['numeric nickname', { nickname: 42, password: 'x' }],
        ['array password', { nickname: 'someone', password: ['x'] }],
        ['null nickname', { nickname: null, password: 'x' }],
        ['object nickname', { nickname: { $ne: 1 }, password: 'x' }],
        ['nickname over 32 chars', { nickname: 'n'.repeat(33), password: 'x' }],
        ['password over 72 bytes', { nickname: 'someone', password: 'é'.repeat(37) }],
        ['nickname with a colon', { nickname: 'a:b', password: 'x' }],
        ['nickname with a newline', { nickname: 'a\nb', password: 'x' }],
        ['nickname with a lone surrogate', { nickname: 'a\ud800', password: 'x' }],
        ['nickname with trailing space', { nickname: 'ada ', password: 'x' }],
        ['password with NUL', { nickname: 'someone', password: 'a\u0000b' }],
        ['a JSON array', ['someone', 'x']],
        ['a JSON string', 'someone'],
      ];
      for (const [what, body] of bad) {
        it(`answers 400 for ${what}`, async () => {
          const req = request(app).post('/api/users');
          const res = body === undefined ? await req : await req.send(body as object);
          assert.equal(res.status, 400, res.text);
          assert.equal(typeof res.body.error, 'string');
        });
      }

      it('accepts a 32-character nickname (counted in characters) and a 72-byte password', async () => {
        const nickname = nick('e').padEnd(30, 'x') + '😀😀';
        assert.equal([...nickname].length, 32);
        const password = 'p'.repeat(72);
        const res = await request(app).post('/api/users').send({ nickname, password });
        assert.equal(res.status, 201, res.text);
        assert.equal(res.body.nickname, nickname);
        await request(app).get('/api/users/me').set(basic(nickname, password)).expect(200);
      });

      it('stores a <script> nickname as plain text', async () => {
        const nickname = `<script>alert(${Date.now() % 1000})</script>`;
        const res = await request(app).post('/api/users').send({ nickname, password: 'x' });
        assert.equal(res.status, 201);
        const got = await request(app).get(`/api/users/${res.body.id}`).expect(200);
        assert.equal(got.body.nickname, nickname);
        assert.match(String(got.headers['content-type']), /application\/json/);
      });
    });

    describe('GET /api/users/me', () => {
      it('answers the user for good Basic credentials and marks them online', async () => {
        const u = await createUser();
        const res = await request(app).get('/api/users/me').set(basic(u.nickname, u.password));
        assert.equal(res.status, 200);
        assert.equal(res.body.id, u.id);
        assert.equal(res.body.online, true);
        await waitFor('online event', () =>
          events.forUser(u.nickname).some((m) => m.online === true),
        );
      });

      for (const [what, header] of [
        ['a wrong password', (n: string) => basic(n, 'wrong')],
        ['an unknown nickname', () => basic('nobody-at-all', 'dog')],
        ['no credentials', () => ({})],
        ['a bearer token', () => bearer(makeToken(1))],
        ['malformed Basic', () => ({ Authorization: 'Basic !!!' })],
      ] as const) {
        it(`answers 401 with the Bearer realm header for ${what}`, async () => {
          const u = await createUser();
          const res = await request(app).get('/api/users/me').set(header(u.nickname));
          assert.equal(res.status, 401);
          assert.equal(res.headers['www-authenticate'], 'Bearer realm="Authentication Required"');
          assert.equal(typeof res.body.error, 'string');
        });
      }
    });

    describe('GET /api/users', () => {
      it('lists users ordered by updated_at then nickname, never with hashes', async () => {
        await createUser();
        await createUser();
        const res = await request(app).get('/api/users').expect(200);
        const users = res.body.users as Array<{ updated_at: number; nickname: string }>;
        assert.ok(users.length >= 2);
        for (let i = 1; i < users.length; i++) {
          const a = users[i - 1]!;
          const b = users[i]!;
          assert.ok(
            a.updated_at < b.updated_at ||
              (a.updated_at === b.updated_at && a.nickname <= b.nickname),
          );
        }
        assert.doesNotMatch(res.text, /password/);
      });

      it('filters by online=0|1 and updated_since', async () => {
        const on = await createUser();
        const off = await createUser();
        await request(app).get('/api/users/me').set(basic(on.nickname, on.password)).expect(200);
        const online = (await request(app).get('/api/users?online=1').expect(200)).body.users;
        const offline = (await request(app).get('/api/users?online=0').expect(200)).body.users;
        const ids = (list: Array<{ id: number }>) => list.map((u) => u.id);
        assert.ok(ids(online).includes(on.id) && !ids(online).includes(off.id));
        assert.ok(ids(offline).includes(off.id) && !ids(offline).includes(on.id));
        assert.ok(online.every((u: { online: boolean }) => u.online === true));

        const future = Math.floor(Date.now() / 1000) + 10;
        const none = await request(app).get(`/api/users?updated_since=${future}`).expect(200);
        assert.deepEqual(none.body.users, []);
        const me = (await request(app).get(`/api/users/${on.id}`)).body;
        const since = await request(app)
          .get(`/api/users?updated_since=${me.updated_at - 1}`)
          .expect(200);
        assert.ok(ids(since.body.users).includes(on.id));
        assert.ok(
          since.body.users.every((u: { updated_at: number }) => u.updated_at >= me.updated_at),
        );
      });

      it('with a valid token marks its user online', async () => {
        const u = await createUser();
        await request(app)
          .get('/api/users')
          .set(bearer(makeToken(u.id)))
          .expect(200);
        const me = await request(app).get(`/api/users/${u.id}`).expect(200);
        assert.equal(me.body.online, true);
      });

      for (const q of [
        'online=maybe',
        'updated_since=yesterday',
        'updated_since=-1',
        'online=1&online=0',
        'online[]=1',
        'limt=5',
      ]) {
        it(`answers 400 for ?${q}`, async () => {
          const res = await request(app).get(`/api/users?${q}`);
          assert.equal(res.status, 400);
          assert.equal(typeof res.body.error, 'string');
        });
      }

      it('answers 401 for an invalid token (token optional, but not a bad one)', async () => {
        const res = await request(app).get('/api/users').set(bearer('not.a.jwt'));
        assert.equal(res.status, 401);
      });
    });

    describe('GET /api/users/:id', () => {
      it('answers the user', async () => {
        const u = await createUser();
        const res = await request(app).get(`/api/users/${u.id}`).expect(200);
        assert.equal(res.body.nickname, u.nickname);
      });

      for (const id of ['999999', 'abc', '1.5', '-1', '0', '1e3', '99999999999999999999', '%00']) {
        it(`answers 404 for id ${id}`, async () => {
          const res = await request(app).get(`/api/users/${id}`);
          assert.equal(res.status, 404);
          assert.equal(res.body.error, 'user not found');
        });
      }
    });

    describe('PUT /api/users/:id', () => {
      it('changes the own nickname and password: 200 with a fresh token, older tokens revoked, an event, the new password works', async () => {
        const u = await createUser();
        // Revoke-all records live in the shared etcd, keyed by user id: an id of its own keeps
        // this one from revoking the tokens of user 1, 2, ... in other test files.
        const id = randomInt(1e6, 1e9);
        await db('users').where({ id: u.id }).update({ id });
        const token = makeToken(id);
        const older = makeToken(id);
        const nickname = nick('renamed');
        const changed = await request(app)
          .put(`/api/users/${id}`)
          .set(bearer(token))
          .send({ nickname, password: 'new-pass' });
        assert.equal(changed.status, 200, changed.text);
        assert.deepEqual(Object.keys(changed.body), ['token']);
        assert.equal(changed.headers['cache-control'], 'no-store');
        const res = await request(app).get(`/api/users/${id}`).expect(200);
        assert.equal(res.body.nickname, nickname);
        await request(app).get('/api/users/me').set(basic(nickname, 'new-pass')).expect(200);
        await request(app).get('/api/users/me').set(basic(nickname, u.password)).expect(401);
        // Every token issued before, the one that made the change included, is refused; the
        // fresh one is taken, now and after the second of the change is over.
        for (const t of [token, older]) {
          await request(app).put('/api/users/me').set(bearer(t)).expect(401);
        }
        await request(app).put('/api/users/me').set(bearer(changed.body.token)).expect(204);
        await new Promise((r) => setTimeout(r, 1100));
        await request(app).put('/api/users/me').set(bearer(changed.body.token)).expect(204);
        await request(app).put('/api/users/me').set(bearer(token)).expect(401);
        await waitFor('rename event', () => events.forUser(nickname).length > 0);
      });

      it('changes the nickname alone: 204, and the token stays valid', async () => {
        const u = await createUser();
        const token = makeToken(u.id);
        await request(app)
          .put(`/api/users/${u.id}`)
          .set(bearer(token))
          .send({ nickname: nick('alone') })
          .expect(204);
        await request(app).put('/api/users/me').set(bearer(token)).expect(204);
      });

      it("answers 403 for someone else's account and changes nothing", async () => {
        const a = await createUser();
        const b = await createUser();
        const res = await request(app)
          .put(`/api/users/${b.id}`)
          .set(bearer(makeToken(a.id)))
          .send({ nickname: nick('hijack') });
        assert.equal(res.status, 403);
        const got = await request(app).get(`/api/users/${b.id}`);
        assert.equal(got.body.nickname, b.nickname);
      });

      it('answers 401 without a token, 404 for an unknown id', async () => {
        const u = await createUser();
        await request(app).put(`/api/users/${u.id}`).send({ nickname: 'x' }).expect(401);
        await request(app)
          .put('/api/users/abc')
          .set(bearer(makeToken(u.id)))
          .send({ nickname: 'x' })
          .expect(404);
        await request(app)
          .put('/api/users/99999999')
          .set(bearer(makeToken(u.id)))
          .send({ nickname: 'x' })
          .expect(404);
      });

      it('answers 400 for a taken nickname, a bad field, or a non-object body', async () => {
        const a = await createUser();
        const b = await createUser();
        const put = (body: unknown) =>
          request(app)
            .put(`/api/users/${a.id}`)
            .set(bearer(makeToken(a.id)))
            .send(body as object);
        assert.equal((await put({ nickname: b.nickname })).status, 400);
        assert.equal((await put({ nickname: '' })).status, 400);
        assert.equal((await put({ nickname: 'x'.repeat(33) })).status, 400);
        assert.equal((await put({ password: 'x'.repeat(73) })).status, 400);
        assert.equal((await put({ password: 7 })).status, 400);
        assert.equal((await put([1])).status, 400);
        const got = await request(app).get(`/api/users/${a.id}`);
        assert.equal(got.body.nickname, a.nickname);
      });

      it('answers 401 for the token of a user that does not exist', async () => {
        const res = await request(app)
          .put('/api/users/1')
          .set(bearer(makeToken(987654321)))
          .send({ nickname: 'x' });
        assert.equal(res.status, 401);
      });
    });

    describe('PUT and DELETE /api/users/me', () => {
      it('mark the token user online then offline, each with an event', async () => {
        const u = await createUser();
        const token = makeToken(u.id);
        await request(app).put('/api/users/me').set(bearer(token)).expect(204);
        assert.equal((await request(app).get(`/api/users/${u.id}`)).body.online, true);
        await request(app).delete('/api/users/me').set(bearer(token)).expect(204);
        assert.equal((await request(app).get(`/api/users/${u.id}`)).body.online, false);
        await waitFor('online then offline events', () => {
          const seen = events.forUser(u.nickname).map((m) => m.online);
          return seen.includes(true) && seen[seen.length - 1] === false;
        });
      });

      it('emit no event when the user was already online (a mere last-seen refresh)', async () => {
        const u = await createUser();
        const token = makeToken(u.id);
        await request(app).put('/api/users/me').set(bearer(token)).expect(204);
        await waitFor('online event', () => events.forUser(u.nickname).length === 2);
        await request(app).put('/api/users/me').set(bearer(token)).expect(204);
        await request(app).get('/api/users').set(bearer(token)).expect(200);
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(events.forUser(u.nickname).length, 2);
      });

      it('answer 401 without a token or with a revoked one', async () => {
        await request(app).put('/api/users/me').expect(401);
        await request(app).delete('/api/users/me').expect(401);
        const u = await createUser();
        const platform = await stack.platform();
        const token = makeToken(u.id);
        const claims = platform.auth.verifyToken(token);
        assert.ok(claims);
        await platform.auth.revocations.revokeToken(claims);
        await waitFor(
          'revocation seen',
          async () => {
            const res = await request(app).put('/api/users/me').set(bearer(token));
            return res.status === 401;
          },
          1000,
        );
      });
    });

    describe('/healthz', () => {
      it('reports the database as a critical check', async () => {
        const res = await request(app).get('/healthz').expect(200);
        assert.equal(res.body.checks.database, 'ok');
      });
    });
  });
}

describe('PUT /api/users/:id with a new password while etcd is away', () => {
  let etcd: EtcdServer;
  let stack: TestStack;
  let db: Knex;
  let app: Express;

  before(async () => {
    // An etcd of its own, to stop.
    etcd = await startEtcd();
    stack = await startStack();
    const platform = await stack.platform({ ETCD: etcd.url });
    db = await openTestDb('sqlite');
    app = createApp({ db, auth: platform.auth, events: platform.events, bcryptRounds: 10 });
  });
  after(async () => {
    await db.destroy();
    await stack.stop();
    await etcd.stop();
  });

  it('answers 503 and changes nothing when the revocation cannot be recorded', async () => {
    const nickname = nick('etcd');
    const created = await request(app).post('/api/users').send({ nickname, password: 'old' });
    assert.equal(created.status, 201);
    const token = makeToken(created.body.id);
    await etcd.stop();
    const t0 = Date.now();
    const res = await request(app)
      .put(`/api/users/${created.body.id}`)
      .set(bearer(token))
      .send({ password: 'new' });
    assert.equal(res.status, 503, res.text);
    assert.equal(res.headers['retry-after'], '1');
    assert.match(res.body.error, /unavailable/);
    assert.ok(Date.now() - t0 < 10000, `${Date.now() - t0} ms`);
    await request(app).get('/api/users/me').set(basic(nickname, 'old')).expect(200);
    await request(app).get('/api/users/me').set(basic(nickname, 'new')).expect(401);
    await request(app).put('/api/users/me').set(bearer(token)).expect(204);
  });
});

describe('users events are in Redis before the change is answered', () => {
  it('a new account: no 201 while its event is held on its way to Redis', async () => {
    // Answered first, an instance killed between its answer and its event (the event leaves a
    // turn later) made a change no reader ever heard of: see Events.emitUpdatedModel.
    const stack = await startStack();
    const proxy = await startTcpProxy(Number(stack.redis.split(':')[1]));
    const events = createEvents(`127.0.0.1:${proxy.port}`);
    const { app, db } = await usersApp(stack, 'sqlite', { events });
    const server = http.createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const sub = await subscribe(stack.redis);
    try {
      await events.ping();
      const nickname = nick('held');
      const res = await answeredAfterThaw(
        proxy,
        'POST /api/users',
        () =>
          fetch(`${url}/api/users`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ nickname, password: 'pw-held-1' }),
            signal: AbortSignal.timeout(10000),
          }),
        {
          // bcrypt first (cost 10, tens of ms), then the event, held here.
          ready: () =>
            waitFor(
              'the account stored',
              async () => (await db('users').where({ nickname })).length === 1,
              5000,
            ),
        },
      );
      assert.equal(res.status, 201);
      await waitFor('User event', () => sub.forUser(nickname).length === 1, 3000);
    } finally {
      proxy.thaw();
      await sub.close();
      await new Promise<void>((r) => server.close(() => r()));
      await events.close();
      await proxy.close();
      await db.destroy();
      await stack.stop();
    }
  });
});
