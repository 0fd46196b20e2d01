// Generated requests at /api/tokens, every method, with the real users service behind it: never a
// 5xx or a hang, and no revocation (or users row) written by a request answered 4xx.
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { createLbClient, type Knex, type Platform } from '@microflack/common';
import { basic, startEtcd, startStack, type TestStack } from '@microflack/testkit';
import { createApp } from '../src/app.js';
import { nick, usersApp } from '@microflack/testkit/apps';
import {
  fuzzEndpointClean,
  METHODS,
  serve,
  tableDigest,
  type FuzzRequest,
} from '@microflack/testkit/fuzz';

const NUM_RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
// Stands for a bearer token minted for each request: DELETE revokes the token it is given.
const FRESH_BEARER = 'Bearer fresh-token-for-this-case';

describe('fuzzing /api/tokens', () => {
  let stack: TestStack;
  let etcd: Awaited<ReturnType<typeof startEtcd>>;
  let usersDb: Knex;
  let usersServer: Server;
  let platform: Platform;
  let server: Awaited<ReturnType<typeof serve>>;
  let userId: number;
  let validAuth: string[];

  before(async () => {
    stack = await startStack();
    // A private etcd: every revocation in it is this file's, so "none written" can be checked.
    etcd = await startEtcd();
    let users;
    ({ app: users, db: usersDb } = await usersApp(stack, 'mariadb'));
    usersServer = users.listen(0, '127.0.0.1');
    await new Promise((r) => usersServer.once('listening', r));
    platform = await stack.platform({ ETCD: etcd.url });
    const tokens = createApp({
      auth: platform.auth,
      lb: createLbClient(`http://127.0.0.1:${(usersServer.address() as AddressInfo).port}`),
    });
    const nickname = nick('f');
    const res = await request(users).post('/api/users').send({ nickname, password: 'pw' });
    userId = res.body.id;
    validAuth = [FRESH_BEARER, basic(nickname, 'pw').Authorization];
    server = await serve(tokens);
  });
  after(async () => {
    await server.close();
    usersServer.closeAllConnections();
    await new Promise((r) => usersServer.close(r));
    await usersDb.destroy();
    await stack.stop();
    await etcd.stop();
  });

  async function snapshot(): Promise<string> {
    const revoked = await platform.etcd.getAll().prefix('/revoked-').strings();
    return `${JSON.stringify(revoked)} ${await tableDigest(usersDb, 'users')}`;
  }

  function send(req: FuzzRequest) {
    if (req.headers.authorization !== FRESH_BEARER) return server.send(req);
    const authorization = `Bearer ${platform.auth.generateToken(userId)}`;
    return server.send({ ...req, headers: { ...req.headers, authorization } });
  }

  for (const method of METHODS) {
    const spec = { method, path: '/api/tokens' };
    it(`${method} /api/tokens: cases ${NUM_RUNS}, 5xx 0, rejected ones change nothing`, async () => {
      await fuzzEndpointClean(send, spec, {
        ids: () => [],
        validAuth: () => validAuth,
        bodyKeys: ['nickname', 'password', 'token'],
        queryNames: ['all'],
        snapshot,
        // A valid password marks its user seen even if the answer is then refused; not the token.
        contentSnapshot: async () =>
          `${JSON.stringify(await platform.etcd.getAll().prefix('/revoked-').strings())} ${await tableDigest(usersDb, 'users', ['id', 'created_at', 'nickname', 'password_hash'])}`,
        numRuns: NUM_RUNS,
      });
    });
  }

  it('is still healthy afterwards, and still issues tokens', async () => {
    const res = await server.send({ method: 'GET', path: '/healthz', headers: {} });
    assert.equal(res.status, 200);
    // Out of the throttle's way: from an address of its own.
    const issued = await server.send({
      method: 'POST',
      path: '/api/tokens',
      headers: { authorization: validAuth[1] as string, 'x-forwarded-for': '192.0.2.77' },
    });
    assert.ok([200, 429].includes(issued.status), `${issued.status} ${issued.text}`);
  });
});
