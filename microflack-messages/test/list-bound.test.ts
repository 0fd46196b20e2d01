// GET /api/messages is bounded (issue 18 item 5): asked without limit, the original's answer (the
// whole last day) while it holds at most 1,000 messages, and the newest 1,000 with a link to the
// ones before them when it holds more; following the links visits every message once, in order.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { MAX_PAGE_SIZE } from '@microflack/common/api';
import { startStack, type TestStack } from '@microflack/testkit';
import { DB_KINDS, startMessagesApp, type TestApp } from '@microflack/testkit/apps';

interface Page {
  messages: Array<{ id: number; updated_at: number }>;
  next?: string;
  previous?: string;
}

for (const kind of DB_KINDS) {
  describe(`GET /api/messages without limit is bounded (${kind})`, () => {
    let stack: TestStack;
    let t: TestApp;
    let expected: number[];
    const total = MAX_PAGE_SIZE + 120;

    before(async () => {
      stack = await startStack();
      t = await startMessagesApp(stack, kind, { allowPrivate: false, maxLinks: 0 });
      // Straight to the table, within the last day, three to a second so that ids break ties.
      const start = Math.floor(Date.now() / 1000) - 3600;
      const rows = Array.from({ length: total }, (_, i) => ({
        source: `m${i}`,
        html: `<p>m${i}</p>`,
        user_id: 1,
        room_id: 1,
        preview_pending: false,
        created_at: start + Math.floor(i / 3),
        updated_at: start + Math.floor(i / 3),
      }));
      await t.db.batchInsert('messages', rows, 200);
      const ordered = await t
        .db('messages')
        .select('id')
        .where('room_id', 1)
        .orderBy([
          { column: 'updated_at', order: 'asc' },
          { column: 'id', order: 'asc' },
        ]);
      expected = ordered.map((r: { id: number }) => Number(r.id));
    });
    after(async () => {
      await t.close();
      await stack.stop();
    });

    const get = async (url: string): Promise<Page> => {
      const res = await request(t.app).get(url);
      assert.equal(res.status, 200, `${url}: ${res.text.slice(0, 200)}`);
      return res.body as Page;
    };

    it(`answers the newest ${MAX_PAGE_SIZE} of more, in the original order, linking the rest`, async () => {
      assert.ok(expected.length > MAX_PAGE_SIZE);
      const newest = await get('/api/messages');
      assert.deepEqual(
        newest.messages.map((m) => m.id),
        expected.slice(-MAX_PAGE_SIZE),
      );
      assert.equal(newest.next, undefined);
      assert.match(newest.previous ?? '', /^\/api\/messages\?limit=1000&until=\d+%2C\d+$/);
      const seen = newest.messages.map((m) => m.id);
      let link = newest.previous;
      while (link) {
        const page = await get(link);
        seen.unshift(...page.messages.map((m) => m.id));
        link = page.previous;
      }
      assert.deepEqual(seen, expected, 'every message once, in order');
    });

    it('answers a small list whole, as the original did, with no link', async () => {
      const since = (await get('/api/messages?limit=1')).messages[0]!.updated_at;
      const recent = expected.length - 30;
      const res = await get(`/api/messages?updated_since=${since + Math.floor(recent / 3)}`);
      assert.ok(res.messages.length > 0 && res.messages.length < MAX_PAGE_SIZE);
      assert.equal(res.previous, undefined);
      assert.equal(res.next, undefined);
    });

    it('refuses after with until, and until with before', async () => {
      for (const [query, error] of [
        ['after=1,1&until=2,2', /give after or until, not both/],
        ['until=1,1&before=latest', /until cannot be combined with before/],
        ['until=x', /until must be <updated_at>,<id> from a previous page/],
      ] as const) {
        const res = await request(t.app).get(`/api/messages?${query}`);
        assert.equal(res.status, 400, query);
        assert.match(res.body.error, error);
      }
    });
  });
}
