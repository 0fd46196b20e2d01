import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import { createLbClient, logger, type Knex, type Platform } from '@microflack/common';
import { basic, bearer, freePort, startStack, waitFor, type TestStack } from '@microflack/testkit';
import { createApp } from '../src/app.js';
// The real users service, as the LB would reach it.
import { nick, usersApp } from '@microflack/testkit/apps';

logger.level = process.env.LOG_LEVEL ?? 'warn';

describe('/api/tokens against a running users service', () => {
  let stack: TestStack;
  let users: Express;
  let usersDb: Knex;
  let usersServer: Server;
  let tokens: Express;
  let platform: Platform;
  let nickname: string;
  let userId: number;

  before(async () => {
    stack = await startStack();
    ({ app: users, db: usersDb } = await usersApp(stack, 'mariadb', {
      throttle: { freeFailuresPerNickname: 3, baseDelayMs: 2000 },
    }));
    usersServer = users.listen(0, '127.0.0.1');
    await new Promise((r) => usersServer.once('listening', r));
    const lb = createLbClient(`http://127.0.0.1:${(usersServer.address() as AddressInfo).port}`);
    platform = await stack.platform();
    tokens = createApp({ auth: platform.auth, lb, health: platform.health });
    // Revoke-all records live in the shared etcd, keyed by user id: a high, random id keeps this
    // file's from revoking the tokens of user 1, 2, ... in other test files running alongside.
    await usersDb.raw('ALTER TABLE users AUTO_INCREMENT = ?', [randomInt(1e6, 1e9)]);
    nickname = nick('t');
    const res = await request(users).post('/api/users').send({ nickname, password: 'dog' });
    userId = res.body.id;
  });
  after(async () => {
    usersServer.closeAllConnections();
    await new Promise((r) => usersServer.close(r));
    await usersDb.destroy();
    await stack.stop();
  });

  async function newToken(): Promise<string> {
    const res = await request(tokens).post('/api/tokens').set(basic(nickname, 'dog'));
    assert.equal(res.status, 200, res.text);
    return res.body.token as string;
  }

  describe('POST /api/tokens', () => {
    it('answers 200 with a token for the user, which the users service accepts', async () => {
      const res = await request(tokens).post('/api/tokens').set(basic(nickname, 'dog'));
      assert.equal(res.status, 200);
      assert.deepEqual(Object.keys(res.body), ['token']);
      assert.equal(res.headers['cache-control'], 'no-store');
      const claims = platform.auth.verifyToken(res.body.token);
      assert.equal(claims?.user_id, userId);
      const me = await request(users).put('/api/users/me').set(bearer(res.body.token));
      assert.equal(me.status, 204);
    });

    for (const [what, headers] of [
      ['a wrong password', () => basic(nickname, 'cat')],
      ['an unknown nickname', () => basic('no-such-user', 'dog')],
      ['no credentials', () => ({})],
      ['a bearer token instead', () => bearer('x.y.z')],
      ['malformed Basic', () => ({ Authorization: 'Basic ***' })],
    ] as const) {
      it(`answers 401 with the Bearer realm header for ${what}`, async () => {
        const res = await request(tokens).post('/api/tokens').set(headers());
        assert.equal(res.status, 401);
        assert.equal(res.headers['www-authenticate'], 'Bearer realm="Authentication Required"');
        assert.equal(typeof res.body.error, 'string');
      });
    }

    it('passes the users service 429 on, with its Retry-After', async () => {
      const victim = nick('v');
      await request(users).post('/api/users').send({ nickname: victim, password: 'dog' });
      for (let i = 0; i < 3; i++) {
        await request(tokens).post('/api/tokens').set(basic(victim, 'nope')).expect(401);
      }
      const res = await request(tokens).post('/api/tokens').set(basic(victim, 'dog'));
      assert.equal(res.status, 429);
      assert.equal(res.headers['retry-after'], '2');
      assert.equal(typeof res.body.error, 'string');
    });

    it('answers 503, not 401, when the users service is unreachable', async () => {
      const closed = createApp({
        auth: platform.auth,
        lb: createLbClient(`http://127.0.0.1:${await freePort()}`),
      });
      const t0 = Date.now();
      const res = await request(closed).post('/api/tokens').set(basic(nickname, 'dog'));
      assert.equal(res.status, 503);
      assert.match(res.body.error, /unavailable/);
      assert.ok(Date.now() - t0 < 10000);
    });

    it('answers 503 when what answers at the LB is not the users service', async () => {
      const stray = createApp({
        auth: platform.auth,
        // A base under which /api/users/me is a 404, as at a default backend.
        lb: createLbClient(
          `http://127.0.0.1:${(usersServer.address() as AddressInfo).port}/nowhere`,
        ),
      });
      const res = await request(stray).post('/api/tokens').set(basic(nickname, 'dog'));
      assert.equal(res.status, 503);
    });
  });

  describe('GET /api/tokens', () => {
    it('answers 200 with the claims while the token is valid, 401 without or with a bad one', async () => {
      const token = await newToken();
      const res = await request(tokens).get('/api/tokens').set(bearer(token));
      assert.equal(res.status, 200);
      assert.equal(res.body.user_id, userId);
      assert.ok(res.body.expires_at > res.body.issued_at);
      await request(tokens).get('/api/tokens').expect(401);
      await request(tokens)
        .get('/api/tokens')
        .set(bearer(`${token}x`))
        .expect(401);
    });
  });

  describe('DELETE /api/tokens', () => {
    it('revokes this token: 204, then 401 here and in the users service within 1 s', async () => {
      const token = await newToken();
      const other = await newToken();
      await request(tokens).delete('/api/tokens').set(bearer(token)).expect(204);
      await request(tokens).get('/api/tokens').set(bearer(token)).expect(401);
      const t0 = Date.now();
      await waitFor(
        'users to reject the token',
        async () => (await request(users).put('/api/users/me').set(bearer(token))).status === 401,
        1000,
      );
      assert.ok(Date.now() - t0 <= 1000);
      await request(tokens).get('/api/tokens').set(bearer(other)).expect(200);
      await request(users).put('/api/users/me').set(bearer(other)).expect(204);
    });

    it('with ?all=1 revokes every token of the user issued so far', async () => {
      const a = await newToken();
      const b = await newToken();
      await request(tokens).delete('/api/tokens?all=1').set(bearer(a)).expect(204);
      for (const t of [a, b]) {
        await request(tokens).get('/api/tokens').set(bearer(t)).expect(401);
        await waitFor(
          'users to reject it',
          async () => (await request(users).get('/api/users').set(bearer(t))).status === 401,
          1000,
        );
      }
      // A token issued later works (one issued at once too: see the next test).
      await new Promise((r) => setTimeout(r, 1100));
      const fresh = await newToken();
      await request(tokens).get('/api/tokens').set(bearer(fresh)).expect(200);
    });

    it('with ?all=1 then signing in again at once: the new token works, now and 1.1 s later, every time', async () => {
      for (let round = 0; round < 5; round++) {
        const old = await newToken();
        await request(tokens).delete('/api/tokens?all=1').set(bearer(old)).expect(204);
        // In the same second as the revocation, most likely: it must not be covered by it.
        const fresh = await newToken();
        for (const wait of [0, 1100]) {
          await new Promise((r) => setTimeout(r, wait));
          const claims = await request(tokens).get('/api/tokens').set(bearer(fresh));
          assert.equal(claims.status, 200, `round ${round}, after ${wait} ms: ${claims.text}`);
          await request(tokens).get('/api/tokens').set(bearer(old)).expect(401);
          // The users service learns of the revocation through etcd, within 1 s.
          await waitFor(
            'users to reject the old token',
            async () => (await request(users).put('/api/users/me').set(bearer(old))).status === 401,
            1000,
          );
          await request(users).put('/api/users/me').set(bearer(fresh)).expect(204);
        }
      }
    });

    it('answers 401 without a token and 400 for a bad ?all', async () => {
      await request(tokens).delete('/api/tokens').expect(401);
      const token = await newToken();
      const res = await request(tokens).delete('/api/tokens?all=yes').set(bearer(token));
      assert.equal(res.status, 400);
      await request(tokens).delete('/api/tokens?all=1&all=0').set(bearer(token)).expect(400);
      await request(tokens).get('/api/tokens').set(bearer(token)).expect(200);
    });
  });

  describe('bad input', () => {
    it('never answers 5xx to malformed or huge bodies and odd headers', async () => {
      const token = await newToken();
      const agent = request(tokens);
      for (const method of ['post', 'get', 'delete'] as const) {
        const malformed = await agent[method]('/api/tokens')
          .set(bearer(token))
          .set('Content-Type', 'application/json')
          .send('{"a":');
        assert.equal(malformed.status, 400);
        const huge = await agent[method]('/api/tokens')
          .set('Content-Type', 'application/json')
          .send(JSON.stringify({ x: 'y'.repeat(100 * 1024) }));
        assert.equal(huge.status, 413);
        for (const auth of [
          'Bearer ' + 'x'.repeat(8000),
          'Basic ' + Buffer.from(`${'<script>'.repeat(500)}:x`).toString('base64'),
          'Basic Og==',
          'Negotiate abc',
        ]) {
          const res = await request(tokens)[method]('/api/tokens').set('Authorization', auth);
          assert.ok(
            res.status >= 400 && res.status < 500,
            `${method} ${auth.slice(0, 12)}: ${res.status}`,
          );
        }
      }
    });
  });
});
