import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import type { Knex, Platform } from '@microflack/common';
import {
  bearer,
  createTestDatabase,
  makeToken,
  Proc,
  startStack,
  tempDir,
  waitFor,
  type TestStack,
} from '@microflack/testkit';
import { startSweeper, type Sweeper } from '../src/presence.js';
import { subscribe } from '@microflack/testkit/socketio';
import { nick, usersApp } from '@microflack/testkit/apps';

const here = path.dirname(fileURLToPath(import.meta.url));

describe('the presence sweep', () => {
  let stack: TestStack;
  let app: Express;
  let db: Knex;
  let platform: Platform;
  let databaseUrl: string;
  let events: Awaited<ReturnType<typeof subscribe>>;
  const sweepers: Sweeper[] = [];
  // Each test campaigns in its own namespace, so parallel test runs never share an election.
  const space = () => platform.etcd.namespace(`/test-${randomBytes(4).toString('hex')}/`);

  before(async () => {
    stack = await startStack();
    databaseUrl = await createTestDatabase('users');
    ({ app, db, platform } = await usersApp(stack, 'mariadb', {}, databaseUrl));
    events = await subscribe(stack.redis);
  });
  after(async () => {
    for (const s of sweepers) await s.stop();
    await events.close();
    await db.destroy();
    await stack.stop();
  });

  function sweeper(etcd: { election: Platform['etcd']['election'] }, instance: string, ttl = 10) {
    const s = startSweeper({
      etcd,
      db,
      events: platform.events,
      instance,
      onlineTimeoutSeconds: 1,
      sweepIntervalMs: 200,
      leaderTtlSeconds: ttl,
    });
    sweepers.push(s);
    return s;
  }

  async function onlineUser() {
    const nickname = nick('p');
    const res = await request(app).post('/api/users').send({ nickname, password: 'x' }).expect(201);
    const token = makeToken(res.body.id);
    await request(app).put('/api/users/me').set(bearer(token)).expect(204);
    return { id: res.body.id as number, nickname, token };
  }

  const isOnline = async (id: number) =>
    (await request(app).get(`/api/users/${id}`).expect(200)).body.online as boolean;

  it('marks a silent user offline after the timeout, with an event, and keeps an active one online', async () => {
    const ns = space();
    const silent = await onlineUser();
    const active = await onlineUser();
    const s = sweeper(ns, 'solo');
    await waitFor('leadership', () => s.leading, 5000);
    const keepAlive = setInterval(() => {
      void request(app)
        .get('/api/users')
        .set(bearer(active.token))
        .then(() => undefined);
    }, 300);
    try {
      await waitFor('the silent user offline', async () => !(await isOnline(silent.id)), 6000);
      assert.equal(await isOnline(active.id), true);
    } finally {
      clearInterval(keepAlive);
    }
    await waitFor('offline event', () => {
      const seen = events.forUser(silent.nickname);
      return seen.length > 0 && seen[seen.length - 1]!.online === false;
    });
    // A request with a token brings the user back online.
    await request(app).get('/api/users').set(bearer(silent.token)).expect(200);
    assert.equal(await isOnline(silent.id), true);
    await s.stop();
    assert.equal(s.leading, false);
  });

  it('runs in exactly one of two instances; the other takes over when the leader stops', async () => {
    const ns = space();
    const other = await stack.platform();
    const a = sweeper(ns, 'a');
    const b = sweeper(other.etcd.namespace(ns.prefix.toString()), 'b');
    await waitFor('a leader', () => a.leading || b.leading, 5000);
    for (let i = 0; i < 10; i++) {
      assert.ok(a.leading !== b.leading, 'exactly one leads');
      await new Promise((r) => setTimeout(r, 50));
    }
    const [leader, follower] = a.leading ? [a, b] : [b, a];
    await leader.stop();
    await waitFor('takeover', () => follower.leading, 3000);
    assert.equal(leader.leading, false);
    const u = await onlineUser();
    await waitFor('sweep by the new leader', async () => !(await isOnline(u.id)), 6000);
    await follower.stop();
  });

  it('lets another instance take over after the leader process is killed, once its lease expires', async () => {
    const prefix = `/test-${randomBytes(4).toString('hex')}/`;
    const dir = tempDir('sweeper');
    const proc = new Proc(
      'sweeper',
      process.execPath,
      ['--import', import.meta.resolve('tsx'), path.join(here, 'fixtures/sweeper.ts')],
      dir,
      {
        ...process.env,
        ETCD: stack.etcd,
        DATABASE_URL: databaseUrl,
        MICROFLACK_HOME: dir,
        ELECTION_PREFIX: prefix,
        LEADER_TTL_SECONDS: '2',
        LOG_LEVEL: 'info',
      },
    );
    try {
      await waitFor('the process to lead', () => proc.log().includes('elected to run'), 20000);
      const b = sweeper(platform.etcd.namespace(prefix), 'survivor', 2);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(b.leading, false, 'the living leader keeps its place');
      proc.signal('SIGKILL');
      const t0 = Date.now();
      await waitFor('takeover after the lease expires', () => b.leading, 10000);
      assert.ok(Date.now() - t0 < 8000);
      await b.stop();
    } finally {
      proc.signal('SIGKILL');
    }
  });
});
