// The user list answers from each user's kept JSON: these try to make it serve a stale or wrong one.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Express } from 'express';
import type { Knex } from '@microflack/common';
import {
  basic,
  bearer,
  createTestDatabase,
  startStack,
  tempDir,
  type TestStack,
} from '@microflack/testkit';
import { openDb } from '@microflack/common';
import request from 'supertest';
import { createApp } from '../src/app.js';
import { migrations } from '../src/migrations.js';
import { toJson, type UserRow } from '../src/users.js';
import { DB_KINDS, nick } from '@microflack/testkit/apps';

/** What the list answered before it kept JSON: every row read and serialised by res.json. */
async function reference(
  db: Knex,
  filter: { online?: boolean; updatedSince?: number } = {},
): Promise<string> {
  const q = db<UserRow>('users').orderBy([
    { column: 'updated_at', order: 'asc' },
    { column: 'nickname', order: 'asc' },
  ]);
  if (filter.online !== undefined) q.where({ online: filter.online ? 1 : 0 });
  if (filter.updatedSince !== undefined) q.where('updated_at', '>', filter.updatedSince);
  const rows: UserRow[] = await q;
  return JSON.stringify({ users: rows.map(toJson) });
}

for (const kind of DB_KINDS) {
  describe(`the user list never serves a stale user (${kind})`, () => {
    let stack: TestStack;
    // Two instances on one database, each with its own connection pool and cache.
    let dbA: Knex;
    let dbB: Knex;
    let a: Express;
    let b: Express;
    let tokenFor: (userId: number) => string;

    before(async () => {
      stack = await startStack();
      const databaseUrl = kind === 'mariadb' ? await createTestDatabase('usercache') : undefined;
      const home = tempDir('usercache-home');
      dbA = await openDb({ databaseUrl, home, service: 'users' }, migrations);
      dbB = await openDb({ databaseUrl, home, service: 'users' }, migrations);
      const platform = await stack.platform();
      const deps = { auth: platform.auth, events: platform.events, bcryptRounds: 10 };
      a = createApp({ ...deps, db: dbA });
      b = createApp({ ...deps, db: dbB });
      tokenFor = (userId) => platform.auth.generateToken(userId);
    });
    after(async () => {
      await dbA.destroy();
      await dbB.destroy();
      await stack.stop();
    });

    async function createUser(app: Express) {
      const nickname = nick('c');
      const res = await request(app).post('/api/users').send({ nickname, password: 'dog' });
      assert.equal(res.status, 201);
      return { id: res.body.id as number, nickname };
    }
    /** The list from `app`, checked byte for byte against the uncached answer. */
    async function list(app: Express, query = '', filter = {}) {
      const res = await request(app).get(`/api/users${query}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(res.text, await reference(dbA, filter));
      return res.body.users as Array<ReturnType<typeof toJson>>;
    }
    const find = <T extends { id: number }>(users: T[], id: number) =>
      users.find((u) => u.id === id);

    it('answers the same bytes as serialising every row, cold and warm, with each filter', async () => {
      await createUser(a);
      await createUser(a);
      await list(a);
      await list(a);
      await list(a, '?online=0', { online: false });
      await list(a, '?online=1', { online: true });
      await list(a, '?updated_since=0', { updatedSince: 0 });
    });

    it('shows a last_seen_at refresh, which leaves updated_at as it was', async () => {
      const u = await createUser(a);
      const before = find(await list(a), u.id);
      await dbB('users')
        .where({ id: u.id })
        .update({ last_seen_at: (before?.last_seen_at ?? 0) + 7 });
      const after = find(await list(a), u.id);
      assert.equal(after?.last_seen_at, (before?.last_seen_at ?? 0) + 7);
      assert.equal(after?.updated_at, before?.updated_at);
    });

    it('shows online then offline again when both happen within one second', async () => {
      const u = await createUser(a);
      let sameSecond = false;
      for (let attempt = 0; attempt < 5 && !sameSecond; attempt++) {
        await list(a);
        // Signing in through B puts the user online; signing out through A takes them off.
        await request(b).get('/api/users/me').set(basic(u.nickname, 'dog')).expect(200);
        const online = find(await list(a), u.id);
        assert.equal(online?.online, true);
        await request(a)
          .delete('/api/users/me')
          .set(bearer(tokenFor(u.id)))
          .expect(204);
        const offline = find(await list(b), u.id);
        assert.equal(offline?.online, false);
        assert.equal(find(await list(a), u.id)?.online, false);
        sameSecond = online?.updated_at === offline?.updated_at;
      }
      assert.ok(sameSecond, 'online and offline never landed in one second in five tries');
    });

    it('shows through one instance a nickname changed through the other', async () => {
      const u = await createUser(a);
      await list(a);
      await list(b);
      const renamed = nick('r');
      await request(b)
        .put(`/api/users/${u.id}`)
        .set(bearer(tokenFor(u.id)))
        .send({ nickname: renamed })
        .expect(204);
      assert.equal(find(await list(a), u.id)?.nickname, renamed);
      assert.equal(find(await list(b), u.id)?.nickname, renamed);
    });

    it('never puts the password hash in the list', async () => {
      const res = await request(a).get('/api/users');
      assert.doesNotMatch(res.text, /password|\$2[aby]\$/);
    });
  });
}
