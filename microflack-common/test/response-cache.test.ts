// Answers from memory (response-cache.ts) against a real Redis and a real SQLite database: two
// "instances" (two caches and two express apps on one database), each answering a list.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import http, { type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import knex from 'knex';
import { openDb, type Knex } from '../src/db.js';
import { createResponseCache, type ResponseCache } from '../src/response-cache.js';
import { bearerIdentity, createAuth, type Auth } from '../src/auth.js';
import { createEtcd, type Etcd } from '../src/etcd.js';
import { createRevocationList, type RevocationList } from '../src/revocation.js';
import { createServiceApp, requestListener } from '../src/service.js';
import {
  startEtcd,
  startRedis,
  tempDir,
  waitFor,
  type EtcdServer,
  type RedisServer,
} from '@microflack/testkit';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Instance {
  url: string;
  answers: ResponseCache;
  /** How many answers the route itself built (the rest came from memory). */
  built: number;
  /** The same for /slow, an answer that takes 1.5 s to build. */
  slowBuilt: number;
  server: Server;
}

async function instance(db: Knex, redis: string | undefined, maxAgeMs = 500): Promise<Instance> {
  const answers = createResponseCache({ service: `test-${process.pid}`, redis, maxAgeMs });
  answers.watch(db);
  const app = express();
  const it: Instance = {
    url: '',
    answers,
    built: 0,
    slowBuilt: 0,
    server: undefined as unknown as Server,
  };
  app.get(
    '/slow',
    answers.keep(() => 'everyone'),
    async (_req, res) => {
      it.slowBuilt++;
      await sleep(1500);
      res.json({ things: await db('things').select('id', 'name').orderBy('id') });
    },
  );
  app.get(
    '/things',
    answers.keep(() => 'everyone'),
    async (_req, res) => {
      it.built++;
      const rows = await db('things').select('id', 'name').orderBy('id');
      res.json({ things: rows });
    },
  );
  app.post('/things/:name', async (req, res) => {
    await db('things').insert({ name: req.params.name });
    res.status(201).end();
  });
  it.server = app.listen(0, '127.0.0.1');
  await new Promise((r) => it.server.once('listening', r));
  it.url = `http://127.0.0.1:${(it.server.address() as AddressInfo).port}`;
  return it;
}

const names = async (i: Instance) =>
  ((await (await fetch(`${i.url}/things`)).json()) as { things: Array<{ name: string }> }).things
    .map((t) => t.name)
    .join(',');

describe('answers from memory', () => {
  let redis: RedisServer;
  let db: Knex;
  let a: Instance;
  let b: Instance;

  before(async () => {
    redis = await startRedis();
    db = await openDb(
      {
        databaseUrl: `sqlite:${tempDir('rc')}/things.sqlite`,
        home: tempDir('rc-home'),
        service: 'things',
      },
      [
        {
          name: '001',
          up: (k) =>
            k.schema.createTable('things', (t) => {
              t.increments('id');
              t.string('name');
            }),
        },
      ],
    );
    a = await instance(db, redis.hostPort);
    b = await instance(db, redis.hostPort);
    await waitFor('both serving', () => a.answers.serving && b.answers.serving, 5000);
  });
  /**
   * Writes `name` through a, then waits until a's generation stops moving (b watches the same
   * database: its "changed" about this write comes back through Redis) and a answers from memory.
   */
  async function afterQuietWrite(name: string): Promise<void> {
    await fetch(`${a.url}/things/${name}`, { method: 'POST' });
    for (let seen = -1; seen !== a.answers.generation;) {
      seen = a.answers.generation;
      await sleep(150);
    }
    await waitFor('serving', () => a.answers.serving, 5000);
  }

  /** Another connection to the database's file. */
  const sameFile = () =>
    knex({
      client: 'better-sqlite3',
      connection: {
        filename: (db.client.config as { connection: { filename: string } }).connection.filename,
      },
      useNullAsDefault: true,
    });

  after(async () => {
    for (const i of [a, b]) {
      i.server.close();
      await i.answers.close();
    }
    await db.destroy();
    await redis.stop();
  });

  it('answers an unchanged list from memory, with a strong ETag and 304 to If-None-Match', async () => {
    await names(a);
    const built = a.built;
    const first = await fetch(`${a.url}/things`);
    const etag = first.headers.get('etag');
    assert.match(etag ?? '', /^"[A-Za-z0-9_-]{27}"$/);
    assert.equal(first.headers.get('cache-control'), 'private, no-cache');
    assert.equal(first.headers.get('content-type'), 'application/json; charset=utf-8');
    const body = await first.text();
    for (let i = 0; i < 20; i++) assert.equal(await (await fetch(`${a.url}/things`)).text(), body);
    assert.equal(a.built, built, 'built again although nothing changed');
    const again = await fetch(`${a.url}/things`, { headers: { 'if-none-match': etag as string } });
    assert.equal(again.status, 304);
    assert.equal(await again.text(), '');
    const other = await fetch(`${a.url}/things`, { headers: { 'if-none-match': '"other"' } });
    assert.equal(other.status, 200);
  });

  it('builds the answer again after a write on this instance, at once', async () => {
    await names(a);
    await fetch(`${a.url}/things/ada`, { method: 'POST' });
    assert.match(await names(a), /ada/);
  });

  /**
   * Writes `<name><round>`, asks with `ask` and checks that the answers were built once and hold
   * the write. A round counts only if nothing dropped what was kept meanwhile (a heartbeat heard
   * late on a loaded machine does, and then every request rightly builds its own): up to 5 rounds.
   */
  async function assertBuiltOnce(
    name: string,
    builds: () => number,
    ask: () => Promise<string[]>,
    message: string,
  ): Promise<void> {
    for (let round = 0; round < 5; round++) {
      await afterQuietWrite(`${name}${round}`);
      const [generation, before] = [a.answers.generation, builds()];
      const bodies = await ask();
      if (a.answers.generation !== generation || !a.answers.serving) continue;
      assert.equal(builds(), before + 1, message);
      assert.equal(new Set(bodies).size, 1);
      assert.match(bodies[0] as string, new RegExp(`${name}${round}`));
      return;
    }
    assert.fail('5 rounds in a row had what was kept dropped while they ran');
  }
  const askTogether = (path: string, n: number) =>
    Promise.all(Array.from({ length: n }, async () => (await fetch(`${a.url}${path}`)).text()));

  it('builds an answer once for requests that ask for it together', async () => {
    await assertBuiltOnce(
      'together',
      () => a.built,
      () => askTogether('/things', 10),
      'built twice',
    );
  });

  it('has requests wait for an answer being built even when it takes over a second', async () => {
    // A slow build (a broad search) must not set every waiting request building its own: under
    // load, that many slow queries at once exhaust the database's pool.
    await assertBuiltOnce(
      'slow',
      () => a.slowBuilt,
      () => askTogether('/slow', 10),
      'built twice',
    );
  });

  it('a build whose client left still answers the requests waiting for it', async () => {
    // A load generator that stops closes the builder's connection with the others': the waiters
    // must not all build the (slow) answer again.
    const ask = async () => {
      const leaving = fetch(`${a.url}/slow`, { signal: AbortSignal.timeout(300) }).then(
        () => 'answered',
        () => 'left',
      );
      await sleep(100);
      const bodies = await askTogether('/slow', 9);
      assert.equal(await leaving, 'left');
      return bodies;
    };
    await assertBuiltOnce('left', () => a.slowBuilt, ask, 'built again after its client left');
  });

  it('a write while a slow answer is built hands over to one new builder, not to every waiter', async () => {
    for (let round = 0; round < 5; round++) {
      await afterQuietWrite(`before${round}`);
      const before = a.slowBuilt;
      const asked = Array.from({ length: 10 }, async () => (await fetch(`${a.url}/slow`)).text());
      // The first build reads after its 1.5 s: the write is in its answer, but came after its
      // ticket, so it is not kept; the next build's answer is.
      await sleep(500);
      await fetch(`${a.url}/things/midbuild${round}`, { method: 'POST' });
      const bodies = await Promise.all(asked);
      if (!a.answers.serving) continue;
      for (const body of bodies) assert.match(body, new RegExp(`midbuild${round}`));
      assert.equal(a.slowBuilt, before + 2, 'the waiters built it again each');
      return;
    }
    assert.fail('5 rounds in a row had the channel lost while they ran');
  });

  it('shows a write on one instance on the other within 1 s (Redis up), and the ETag changes', async () => {
    for (let round = 0; round < 5; round++) {
      const before = await fetch(`${b.url}/things`);
      const etag = before.headers.get('etag') as string;
      await before.text();
      const name = `up${round}`;
      await fetch(`${a.url}/things/${name}`, { method: 'POST' });
      const t0 = Date.now();
      while (!(await names(b)).includes(name)) {
        assert.ok(
          Date.now() - t0 < 1000,
          `not seen on the other instance after ${Date.now() - t0} ms`,
        );
        await sleep(10);
      }
      const after = await fetch(`${b.url}/things`, { headers: { 'if-none-match': etag } });
      assert.equal(after.status, 200, 'the old ETag must not match the new list');
      await after.text();
    }
  });

  it('with Redis down answers nothing from memory: every read sees every write at once', async () => {
    await redis.stop();
    await waitFor('not serving', () => !a.answers.serving && !b.answers.serving, 5000);
    for (let round = 0; round < 5; round++) {
      const name = `down${round}`;
      await names(b);
      await fetch(`${a.url}/things/${name}`, { method: 'POST' });
      assert.match(await names(b), new RegExp(name), 'stale read while Redis was down');
    }
    const built = b.built;
    await names(b);
    await names(b);
    assert.equal(b.built, built + 2, 'answered from memory while Redis was down');
    await redis.start();
    await waitFor('serving again', () => a.answers.serving && b.answers.serving, 10000);
    const name = 'back';
    await names(b);
    await fetch(`${a.url}/things/${name}`, { method: 'POST' });
    const t0 = Date.now();
    while (!(await names(b)).includes(name)) {
      assert.ok(Date.now() - t0 < 1000, 'not seen after Redis came back');
      await sleep(10);
    }
  });

  it('bounds what no instance tells (a writer outside the services) by the answer age', async () => {
    // Another connection to the same file, which no cache watches: an operator's SQL.
    const outside = sameFile();
    try {
      await names(b);
      await outside('things').insert({ name: 'by-hand' });
      const t0 = Date.now();
      while (!(await names(b)).includes('by-hand')) {
        assert.ok(Date.now() - t0 < 1000, 'a write by hand not seen within 1 s');
        await sleep(20);
      }
    } finally {
      await outside.destroy();
    }
  });

  it('does not keep an answer built while a write was going on', async () => {
    // A write that starts after the read began and ends before the answer is sent.
    const slow = express();
    const answers = createResponseCache({ service: `test-${process.pid}`, redis: redis.hostPort });
    // Its own connection, which the other instances do not watch (they would tell it of the
    // write, as they tell each other of theirs).
    const own = sameFile();
    answers.watch(own);
    let builds = 0;
    slow.get(
      '/things',
      answers.keep(() => 'everyone'),
      async (_req, res) => {
        builds++;
        const rows = await own('things').select('name');
        if (builds === 1) await own('things').insert({ name: 'during' });
        res.json({ things: rows });
      },
    );
    const server = slow.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/things`;
    try {
      await waitFor('serving', () => answers.serving, 5000);
      const first = (await (await fetch(url)).text()).includes('during');
      assert.equal(first, false);
      assert.match(
        await (await fetch(url)).text(),
        /during/,
        'the answer from before the write was kept',
      );
    } finally {
      server.close();
      await answers.close();
      await own.destroy();
    }
  });

  it('without REDIS answers nothing from memory but still gives ETags', async () => {
    const alone = await instance(db, undefined);
    try {
      await names(alone);
      await names(alone);
      assert.equal(alone.built, 2);
      const res = await fetch(`${alone.url}/things`);
      const etag = res.headers.get('etag') as string;
      await res.text();
      assert.equal(
        (await fetch(`${alone.url}/things`, { headers: { 'if-none-match': etag } })).status,
        304,
      );
    } finally {
      alone.server.close();
      await alone.answers.close();
    }
  });
});

// In front of the app (requestListener, service.ts): a kept answer is found again by URL and
// caller before express runs, on a service app with real token checks (etcd revocations).
describe('answers from memory in front of the app', () => {
  let redis: RedisServer;
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let revocations: RevocationList;
  let auth: Auth;
  let db: Knex;
  let answers: ResponseCache;
  let server: Server;
  let url: string;
  /** Requests that reached express (a front answer never does), and answers the route built. */
  const seen = { express: 0, built: 0 };

  before(async () => {
    [redis, etcdServer] = await Promise.all([startRedis(), startEtcd()]);
    etcd = createEtcd([etcdServer.url]);
    revocations = createRevocationList(etcd);
    await revocations.start();
    auth = createAuth('front-test-secret-front-test-secret-0123', revocations);
    db = await openDb(
      {
        databaseUrl: `sqlite:${tempDir('rcf')}/notes.sqlite`,
        home: tempDir('rcf-home'),
        service: 'notes',
      },
      [
        {
          name: '001',
          up: (k) =>
            k.schema.createTable('notes', (t) => {
              t.increments('id');
              t.integer('owner');
              t.string('text');
            }),
        },
      ],
    );
    answers = createResponseCache({
      service: `front-${process.pid}`,
      redis: redis.hostPort,
      identify: bearerIdentity(auth),
    });
    answers.watch(db);
    const app = createServiceApp({ front: answers.front }, (a) => {
      a.use((_req, _res, next) => {
        seen.express++;
        next();
      });
      // Public notes for everyone; with a token, the caller's own notes too.
      a.get(
        '/notes',
        auth.tokenOptional,
        answers.keep((req) => `user ${req.auth?.claims.user_id ?? 'anonymous'}`),
        async (req, res) => {
          seen.built++;
          const owner = req.auth?.claims.user_id ?? 0;
          const rows = await db('notes').whereIn('owner', [0, owner]).orderBy('id');
          res.set('Link', '</notes?page=2>; rel="next"');
          res.json({ notes: rows.map((r: { text: string }) => r.text) });
        },
      );
      a.post('/notes', express.json(), async (req, res) => {
        await db('notes').insert({ owner: Number(req.body.owner), text: String(req.body.text) });
        res.status(201).end();
      });
    });
    server = http.createServer(requestListener(app)).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await waitFor('serving', () => answers.serving, 5000);
    await fetch(`${url}/notes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ owner: 0, text: 'public' }),
    });
    await fetch(`${url}/notes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ owner: 7, text: 'sevens secret' }),
    });
  });
  after(async () => {
    server?.close();
    await answers?.close();
    await db?.destroy();
    await revocations?.stop();
    etcd?.close();
    await Promise.all([redis?.stop(), etcdServer?.stop()]);
  });

  const get = (headers: Record<string, string> = {}) => fetch(`${url}/notes`, { headers });
  const bearerOf = (token: string) => ({ authorization: `Bearer ${token}` });

  it('answers a kept URL before express, with the same bytes and headers, and 304', async () => {
    const first = await get();
    const body = await first.text();
    const { express: before, built } = seen;
    for (let i = 0; i < 10; i++) {
      const again = await get();
      assert.equal(await again.text(), body);
      for (const h of ['etag', 'cache-control', 'content-type', 'link']) {
        assert.equal(again.headers.get(h), first.headers.get(h), h);
      }
    }
    assert.equal(seen.express, before, 'express ran for an answer kept in front');
    assert.equal(seen.built, built);
    const etag = first.headers.get('etag') as string;
    const notModified = await get({ 'if-none-match': etag });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get('etag'), etag);
    assert.equal(await notModified.text(), '');
    assert.equal(seen.express, before);
    // Counted and logged like any answer, under the route's name.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      metrics,
      /http_request_duration_seconds_count\{method="GET",route="\/notes",status="304"\} [1-9]/,
    );
  });

  it("gives a token's answer to that user only, and never a kept answer to a bad token", async () => {
    const seven = auth.generateToken(7);
    const eight = auth.generateToken(8);
    const mine = await (await get(bearerOf(seven))).text();
    assert.match(mine, /sevens secret/);
    const before = seen.express;
    assert.equal(await (await get(bearerOf(seven))).text(), mine);
    assert.equal(seen.express, before, "the user's own answer again in front");
    const other = await (await get(bearerOf(eight))).text();
    assert.doesNotMatch(other, /sevens secret/);
    // Whatever is kept for this URL, a forged, an expired or a revoked token gets the app's 401.
    const forged = createAuth('another-secret-another-secret-0123', revocations).generateToken(7);
    assert.equal((await get(bearerOf(forged))).status, 401);
    assert.equal((await get(bearerOf(`${seven}x`))).status, 401);
    const shortLived = auth.generateToken(7, 1);
    assert.match(await (await get(bearerOf(shortLived))).text(), /sevens secret/);
    await sleep(2100);
    assert.equal((await get(bearerOf(shortLived))).status, 401);
    const revoked = auth.generateToken(7);
    assert.match(await (await get(bearerOf(revoked))).text(), /sevens secret/);
    await revocations.revokeToken(auth.verifyToken(revoked) as { jti: string; exp: number });
    assert.equal((await get(bearerOf(revoked))).status, 401);
    assert.match(await (await get(bearerOf(seven))).text(), /sevens secret/);
  });

  it('builds again after a write, and leaves Basic credentials to the app', async () => {
    await (await get()).text();
    await fetch(`${url}/notes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ owner: 0, text: 'second public' }),
    });
    assert.match(await (await get()).text(), /second public/);
    const before = seen.express;
    await (await get({ authorization: 'Basic YWRhOnB3' })).text();
    assert.equal(seen.express, before + 1);
  });
});
