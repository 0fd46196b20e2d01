// Generated requests at the rooms routes and the new message routes (delete, reactions), every
// method: never a 5xx or a hang, and rooms, members, messages and reactions unchanged by every
// request answered 4xx.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { bearer, startStack, type TestStack } from '@microflack/testkit';
import {
  fuzzEndpointClean,
  METHODS,
  serve,
  tableDigest,
  type EndpointSpec,
} from '@microflack/testkit/fuzz';
import { startMessagesApp, type TestApp } from '@microflack/testkit/apps';

// Fewer cases per endpoint than the messages fuzz: there are 7 paths here, 4 methods each.
const NUM_RUNS = Number(process.env.FUZZ_RUNS ?? 250);

describe('fuzzing /api/rooms and the message delete and reaction routes', () => {
  let stack: TestStack;
  let t: TestApp;
  let server: Awaited<ReturnType<typeof serve>>;
  let validAuth: string[];
  let ids: string[];
  let guest: number;

  before(async () => {
    stack = await startStack();
    t = await startMessagesApp(stack, 'mariadb', { allowPrivate: false, maxLinks: 0 });
    // Events go to the shared Redis, where other files' subscribers match messages by id.
    await t.db.raw('ALTER TABLE messages AUTO_INCREMENT = ?', [randomInt(1e6, 1e9)]);
    const owner = await t.user('fz');
    const other = await t.user('fz');
    guest = (await t.user('fz')).id;
    const pub = await request(t.app)
      .post('/api/rooms')
      .set(bearer(owner.token))
      .send({ name: 'p' });
    const priv = await request(t.app)
      .post('/api/rooms')
      .set(bearer(other.token))
      .send({ name: 's', private: true });
    const m = await request(t.app)
      .post('/api/messages')
      .set(bearer(owner.token))
      .send({ source: 'a', room_id: pub.body.id });
    const theirs = await request(t.app)
      .post('/api/messages')
      .set(bearer(other.token))
      .send({ source: 'b', room_id: priv.body.id });
    // Room ids and message ids both: each path takes either, and most cases hit a real one.
    ids = [
      String(pub.body.id),
      String(priv.body.id),
      String(m.body.id),
      String(theirs.body.id),
      '1',
    ];
    validAuth = [bearer(owner.token).Authorization];
    server = await serve(t.app);
  });
  after(async () => {
    await server.close();
    await t.close();
    await stack.stop();
  });

  async function snapshot(): Promise<string> {
    const parts = [];
    for (const table of ['rooms', 'room_members', 'messages', 'reactions', 'mentions']) {
      parts.push(await tableDigest(t.db, table));
    }
    return parts.join(' ');
  }

  const paths = [
    '/api/rooms',
    '/api/rooms/direct',
    '/api/rooms/:id',
    '/api/rooms/:id/read',
    () => `/api/rooms/:id/members/${guest}`,
    `/api/messages/:id/reactions/${encodeURIComponent('👍')}`,
    '/api/messages/:id',
  ];
  for (const p of paths) {
    for (const method of METHODS) {
      const label = typeof p === 'string' ? p : '/api/rooms/:id/members/<user>';
      it(`${method} ${label}: cases ${NUM_RUNS}, 5xx 0, rejected ones change nothing`, async () => {
        const spec: EndpointSpec = { method, path: typeof p === 'string' ? p : p() };
        await fuzzEndpointClean(server.send, spec, {
          ids: () => ids,
          validAuth: () => validAuth,
          bodyKeys: ['name', 'topic', 'private', 'user_id', 'message_id', 'source', 'room_id'],
          queryNames: ['after', 'limit', 'room_id', 'before', 'q'],
          snapshot,
          numRuns: NUM_RUNS,
        });
      });
    }
  }

  it('is still healthy afterwards', async () => {
    const res = await server.send({ method: 'GET', path: '/healthz', headers: {} });
    assert.equal(res.status, 200);
  });
});
