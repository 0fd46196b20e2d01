// GET /api/users is bounded (issue 18 item 5): without limit, the whole list while it is small
// and the newest USERS_PAGE_MAX users with a link to the older ones when it is not; with limit and
// after, forward pages; every page in the original's (updated_at, nickname) order, and following
// the links visits every user exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Express } from 'express';
import request from 'supertest';
import { nicknameKey, USERS_PAGE_MAX } from '@microflack/common/api';
import type { Knex } from '@microflack/common';
import { startStack, type TestStack } from '@microflack/testkit';
import { DB_KINDS, usersApp } from '@microflack/testkit/apps';

interface Page {
  users: Array<{ id: number; nickname: string; updated_at: number }>;
  next?: string;
  previous?: string;
}

for (const kind of DB_KINDS) {
  describe(`GET /api/users in pages (${kind})`, () => {
    let stack: TestStack;
    let app: Express;
    let db: Knex;
    const total = USERS_PAGE_MAX + 150;
    let expected: number[];

    before(async () => {
      stack = await startStack();
      ({ app, db } = await usersApp(stack, kind));
      // Written straight to the table (bcrypt for 1,150 users would take a minute); a few
      // seconds apart and some within one second, so that the nickname breaks ties.
      const base = 1_700_000_000;
      const rows = Array.from({ length: total }, (_, i) => {
        const nickname = `pg${kind[0]}${String(i).padStart(5, '0')}`;
        const t = base + Math.floor(i / 3);
        return {
          created_at: t,
          updated_at: t,
          last_seen_at: t,
          nickname,
          nickname_key: nicknameKey(nickname),
          password_hash: 'x',
          online: 0,
        };
      });
      await db.batchInsert('users', rows, 200);
      const ordered = await db('users')
        .select('id')
        .orderBy([
          { column: 'updated_at', order: 'asc' },
          { column: 'nickname', order: 'asc' },
        ]);
      expected = ordered.map((r: { id: number }) => Number(r.id));
    });
    after(async () => {
      await db.destroy();
      await stack.stop();
    });

    const get = async (url: string): Promise<Page> => {
      const res = await request(app).get(url);
      assert.equal(res.status, 200, `${url}: ${res.text.slice(0, 200)}`);
      return res.body as Page;
    };

    it(`answers at most ${USERS_PAGE_MAX} without limit: the newest, with a link to the older`, async () => {
      const newest = await get('/api/users');
      assert.ok(expected.length > USERS_PAGE_MAX);
      assert.deepEqual(
        newest.users.map((u) => u.id),
        expected.slice(-USERS_PAGE_MAX),
        'the newest, in the original order',
      );
      assert.equal(newest.next, undefined);
      assert.ok(newest.previous, 'a link to the older users');
      // Following the links back visits every user once.
      const seen = [...newest.users.map((u) => u.id)];
      let link: string | undefined = newest.previous;
      while (link) {
        const page = await get(link);
        seen.unshift(...page.users.map((u) => u.id));
        link = page.previous;
      }
      assert.deepEqual(seen, expected);
    });

    it('pages forward with limit and after, every user once, in order', async () => {
      const seen: number[] = [];
      let link: string | undefined = '/api/users?limit=333';
      let pages = 0;
      while (link) {
        const page = await get(link);
        assert.ok(page.users.length <= 333);
        seen.push(...page.users.map((u) => u.id));
        link = page.next;
        pages++;
      }
      assert.equal(pages, Math.ceil(expected.length / 333));
      assert.deepEqual(seen, expected);
    });

    it('keeps the filters in its links', async () => {
      const page = await get('/api/users?online=0&limit=10');
      assert.match(page.next ?? '', /^\/api\/users\?online=0&limit=10&after=\d+%2C/);
    });

    for (const [query, error] of [
      ['limit=0', /limit must be an integer from 1 to 1000/],
      [`limit=${USERS_PAGE_MAX + 1}`, /limit must be an integer from 1 to 1000/],
      ['after=x', /after must be <updated_at>,<nickname> from a previous page/],
      ['after=1,a&before=2,b', /give after or before, not both/],
      ['limit=1&limit=2', /limit must be given once/],
    ] as const) {
      it(`refuses ?${query} with 400`, async () => {
        const res = await request(app).get(`/api/users?${query}`);
        assert.equal(res.status, 400);
        assert.match(res.body.error, error);
      });
    }
  });
}
