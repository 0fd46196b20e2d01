// Every list of rooms and messages reads through an index (issue 16: "EXPLAIN of each new query
// uses an index"). The routes run a realistic session on a table of a few thousand messages while
// every SELECT they send is captured; each is then EXPLAINed on the same database, and no plan may
// read a whole table of messages, members, reactions or mentions.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { bearer, startStack, type TestStack } from '@microflack/testkit';
import { DB_KINDS, startMessagesApp, type TestApp } from '@microflack/testkit/apps';

// The tables that grow with use; rooms itself is read by its primary key or its (private, id) index.
const BIG_TABLES = ['messages', 'room_members', 'reactions', 'mentions'];

interface Captured {
  sql: string;
  bindings: unknown[];
}

for (const kind of DB_KINDS) {
  describe(`the rooms and messages queries use indexes (${kind})`, () => {
    let stack: TestStack;
    let t: TestApp;
    const captured = new Map<string, Captured>();

    before(async () => {
      stack = await startStack();
      t = await startMessagesApp(stack, kind, { allowPrivate: false, maxLinks: 0 });
      // A table of some size (so that the planner has a reason to prefer indexes), in general and
      // in a few rooms, with members.
      const now = Math.floor(Date.now() / 1000);
      for (let room = 2; room <= 6; room++) {
        await t.db('rooms').insert({
          id: room,
          name: `r${room}`,
          topic: '',
          private: room % 2,
          created_at: now,
          updated_at: now,
        });
        await t.db('room_members').insert(
          Array.from({ length: 40 }, (_, u) => ({
            room_id: room,
            user_id: u + 1,
            joined_at: now,
            last_read_id: 0,
          })),
        );
      }
      const rows = Array.from({ length: 3000 }, (_, i) => ({
        source: `word${i % 50} message ${i}`,
        html: `<p>word${i % 50} message ${i}</p>`,
        user_id: (i % 40) + 1,
        room_id: (i % 6) + 1,
        preview_pending: false,
        created_at: now - 200000 + i * 60,
        updated_at: now - 200000 + i * 60,
      }));
      await t.db.batchInsert('messages', rows, 250);
      if (kind === 'mariadb') {
        for (const table of BIG_TABLES) await t.db.raw(`ANALYZE TABLE ${table}`);
      } else {
        await t.db.raw('ANALYZE');
      }
      t.db.on('query', (q: { sql: string; bindings?: unknown[] }) => {
        if (/^\s*select/i.test(q.sql))
          captured.set(q.sql, { sql: q.sql, bindings: q.bindings ?? [] });
      });
    });
    after(async () => {
      await t.close();
      await stack.stop();
    });

    it('plans every SELECT of a session without a full scan of a growing table', async () => {
      const ada = await t.user('ada');
      const bob = await t.user('bob');
      const as = (u: { token: string }, r: request.Test) => r.set(bearer(u.token));
      const room = await as(ada, request(t.app).post('/api/rooms')).send({
        name: 'explained',
        private: true,
      });
      assert.equal(room.status, 201);
      const id = room.body.id as number;
      for (const [u, path] of [
        [ada, `/api/rooms/${id}/members/${bob.id}`],
        [ada, `/api/messages/1/reactions/%F0%9F%91%8D`],
      ] as const) {
        const res = await as(u, request(t.app).put(path));
        assert.ok(res.status < 300, `PUT ${path}: ${res.status} ${res.text}`);
      }
      const posted = await as(ada, request(t.app).post('/api/messages')).send({
        source: 'hello @bob word7',
        room_id: id,
      });
      assert.equal(posted.status, 201);
      for (const path of [
        '/api/rooms',
        '/api/rooms?limit=10',
        `/api/rooms/${id}`,
        '/api/rooms/memberships',
        '/api/messages',
        '/api/messages?limit=50',
        `/api/messages?room_id=${id}`,
        '/api/messages?room_id=2&before=latest&limit=50',
        '/api/messages?room_id=2&before=2000&limit=50',
        '/api/messages?q=word7',
        '/api/messages?q=word7&room_id=3',
        `/api/messages?user_id=${ada.id}&limit=20`,
        `/api/messages/${posted.body.id}`,
      ]) {
        const res = await as(bob, request(t.app).get(path));
        assert.equal(res.status, 200, `${path}: ${res.text.slice(0, 200)}`);
      }
      const read = await as(bob, request(t.app).put(`/api/rooms/${id}/read`)).send({
        message_id: posted.body.id,
      });
      assert.ok(read.status < 300, `read marker: ${read.status}`);
      await as(bob, request(t.app).get('/api/rooms'));

      assert.ok(captured.size >= 10, `${captured.size} queries captured`);
      const fullScans: string[] = [];
      for (const q of captured.values()) {
        for (const table of await fullScansOf(q)) fullScans.push(`${table}: ${q.sql}`);
      }
      assert.deepEqual(fullScans, [], 'no growing table read whole');
    });

    it('sees a whole-table read when there is one (the check itself)', async () => {
      const scans = await fullScansOf({
        sql: 'select m.id from messages as m where m.source like ?',
        bindings: ['%x%'],
      });
      assert.deepEqual(scans, ['m']);
    });

    /** The growing tables a query's plan reads whole (aliases, as plans name them, resolved). */
    async function fullScansOf(q: Captured): Promise<string[]> {
      const aliases = new Map<string, string>();
      for (const m of q.sql.matchAll(/[`"]?(\w+)[`"]?\s+as\s+[`"]?(\w+)[`"]?/gi)) {
        aliases.set(m[2] as string, m[1] as string);
      }
      const big = (name: string | undefined) =>
        name !== undefined && BIG_TABLES.includes(aliases.get(name) ?? name);
      if (kind === 'sqlite') {
        const plan = (await t.db.raw(`EXPLAIN QUERY PLAN ${q.sql}`, q.bindings as never)) as Array<{
          detail: string;
        }>;
        // "SCAN messages" reads the table; "SCAN messages USING [COVERING] INDEX" and "SEARCH"
        // go through an index.
        return plan
          .map((row) => /^SCAN (\w+)(?: AS \w+)?$/.exec(row.detail)?.[1])
          .filter((table): table is string => big(table));
      }
      const [rows] = (await t.db.raw(`EXPLAIN ${q.sql}`, q.bindings as never)) as [
        Array<{ table: string | null; type: string | null }>,
      ];
      return rows
        .filter((row) => row.type === 'ALL' && big(row.table ?? undefined))
        .map((row) => row.table as string);
    }
  });
}
