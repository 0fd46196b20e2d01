// Generated requests at /api/messages and /api/messages/:id, every method: never a 5xx or a hang,
// and the messages table unchanged by every request answered 4xx.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { bearer, makeToken, startStack, type TestStack } from '@microflack/testkit';
import {
  fuzzEndpointClean,
  METHODS,
  serve,
  tableDigest,
  type EndpointSpec,
} from '@microflack/testkit/fuzz';
import { startMessagesApp, type TestApp } from '@microflack/testkit/apps';

const NUM_RUNS = Number(process.env.FUZZ_RUNS ?? 1000);

describe('fuzzing /api/messages and /api/messages/:id', () => {
  let stack: TestStack;
  let t: TestApp;
  let server: Awaited<ReturnType<typeof serve>>;
  let validAuth: string[];
  let ids: string[];

  before(async () => {
    stack = await startStack();
    // No previews: they would change rows after the answer, and look up generated host names.
    t = await startMessagesApp(stack, 'mariadb', { allowPrivate: false, maxLinks: 0 });
    // Events go to the shared Redis, where other files' subscribers match messages by id: ids of
    // our own range keep ours from being taken for theirs.
    await t.db.raw('ALTER TABLE messages AUTO_INCREMENT = ?', [randomInt(1e6, 1e9)]);

    const mine = makeToken(1);
    const a = await request(t.app).post('/api/messages').set(bearer(mine)).send({ source: 'a' });
    const b = await request(t.app)
      .post('/api/messages')
      .set(bearer(makeToken(2)))
      .send({ source: 'b' });
    ids = [String(a.body.id), String(b.body.id)];
    validAuth = [bearer(mine).Authorization];
    server = await serve(t.app);
  });
  after(async () => {
    await server.close();
    await t.close();
    await stack.stop();
  });

  const specs: EndpointSpec[] = ['/api/messages', '/api/messages/:id'].flatMap((path) =>
    METHODS.map((method) => ({ method, path })),
  );
  for (const spec of specs) {
    it(`${spec.method} ${spec.path}: cases ${NUM_RUNS}, 5xx 0, rejected ones change nothing`, async () => {
      await fuzzEndpointClean(server.send, spec, {
        ids: () => ids,
        validAuth: () => validAuth,
        bodyKeys: ['source'],
        queryNames: ['updated_since', 'user_id', 'limit', 'after', 'until'],
        snapshot: () => tableDigest(t.db, 'messages'),
        numRuns: NUM_RUNS,
      });
    });
  }

  it('is still healthy afterwards', async () => {
    const res = await server.send({ method: 'GET', path: '/healthz', headers: {} });
    assert.equal(res.status, 200);
  });
});
