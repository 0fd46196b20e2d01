// Generated requests at /api/users and /api/users/me, every method: never a 5xx or a hang, and
// the users table unchanged by every request answered 4xx.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Knex } from '@microflack/common';
import { basic, bearer, makeToken, startStack, type TestStack } from '@microflack/testkit';
import {
  fuzzEndpointClean,
  METHODS,
  serve,
  tableDigest,
  type EndpointSpec,
} from '@microflack/testkit/fuzz';
import { nick, usersApp } from '@microflack/testkit/apps';

const NUM_RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
// Presence (last_seen_at, online, updated_at) moves for any request with a valid credential.
const CONTENT_COLUMNS = ['id', 'created_at', 'nickname', 'password_hash'];

describe('fuzzing /api/users and /api/users/me', () => {
  let stack: TestStack;
  let db: Knex;
  let server: Awaited<ReturnType<typeof serve>>;
  let validAuth: string[];

  before(async () => {
    stack = await startStack();
    let app;
    ({ app, db } = await usersApp(stack, 'mariadb'));
    const nickname = nick('f');
    const res = await request(app).post('/api/users').send({ nickname, password: 'pw' });
    validAuth = [bearer(makeToken(res.body.id)).Authorization, basic(nickname, 'pw').Authorization];
    server = await serve(app);
  });
  after(async () => {
    await server.close();
    await db.destroy();
    await stack.stop();
  });

  const specs: EndpointSpec[] = ['/api/users', '/api/users/me'].flatMap((path) =>
    METHODS.map((method) => ({ method, path })),
  );
  for (const spec of specs) {
    it(`${spec.method} ${spec.path}: cases ${NUM_RUNS}, 5xx 0, rejected ones change nothing`, async () => {
      await fuzzEndpointClean(server.send, spec, {
        ids: () => [],
        validAuth: () => validAuth,
        bodyKeys: ['nickname', 'password'],
        queryNames: ['online', 'updated_since', 'limit', 'after', 'before'],
        snapshot: () => tableDigest(db, 'users'),
        contentSnapshot: () => tableDigest(db, 'users', CONTENT_COLUMNS),
        numRuns: NUM_RUNS,
      });
    });
  }

  it('is still healthy afterwards', async () => {
    const res = await server.send({ method: 'GET', path: '/healthz', headers: {} });
    assert.equal(res.status, 200);
  });
});
