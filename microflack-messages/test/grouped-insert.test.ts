// MariaDB: the posts made in one turn of the event loop are written by one multi-row INSERT.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Knex } from '@microflack/common';
import { startStack, type TestStack } from '@microflack/testkit';
import { openMessagesDb } from '@microflack/testkit/apps';
import { insertMessage, MAX_GROUPED_INSERT_ROWS, nowSeconds } from '../src/messages.js';

describe('grouped inserts (mariadb)', () => {
  let stack: TestStack;
  let db: Knex;
  const inserts: string[] = [];
  before(async () => {
    stack = await startStack();
    db = await openMessagesDb('mariadb');
    db.on('query', (q: { sql: string }) => {
      if (/^insert into `messages`/i.test(q.sql)) inserts.push(q.sql);
    });
  });
  after(async () => {
    await db.destroy();
    await stack.stop();
  });

  const postKeyed = async (source: string, userId = 7, key: string | null = null) =>
    insertMessage(db, {
      source,
      html: `<p>${source}</p>`,
      user_id: userId,
      room_id: 1,
      preview_pending: false,
      idempotency_key: key,
    });
  const post = async (source: string, userId = 7) => (await postKeyed(source, userId)).message;
  const countRows = async (where: Record<string, unknown>) =>
    Number((await db('messages').where(where).count('* as n').first())?.n);

  it('writes a burst as few statements, and each post gets the id of its own row', async () => {
    inserts.length = 0;
    const count = 2 * MAX_GROUPED_INSERT_ROWS + 50;
    const sources = Array.from({ length: count }, (_, i) => `burst ${i}`);
    const rows = await Promise.all(sources.map((s) => post(s)));
    assert.equal(inserts.length, 3, 'two full statements and the rest');
    assert.equal(new Set(rows.map((r) => r.id)).size, count, 'distinct ids');
    const stored = await db('messages')
      .whereIn(
        'id',
        rows.map((r) => r.id),
      )
      .select('id', 'source', 'html', 'user_id', 'created_at');
    assert.equal(stored.length, count);
    const byId = new Map(stored.map((r) => [Number(r.id), r]));
    rows.forEach((r, i) => {
      const s = byId.get(r.id);
      assert.equal(s?.source, sources[i], `post ${i} answered with the id of its own row`);
      assert.equal(s?.html, `<p>${sources[i]}</p>`);
      assert.equal(Number(s?.user_id), 7);
      assert.ok(Math.abs(Number(s?.created_at) - nowSeconds()) <= 5);
      assert.equal(r.source, sources[i]);
    });
  });

  it("fails only the post whose row the database refuses, not the others' in its statement", async () => {
    inserts.length = 0;
    const sources = ['good 1', 'good 2', 'bad', 'good 3'];
    // A user id out of the column's range: MariaDB (strict mode) refuses the whole statement.
    const results = await Promise.allSettled(
      sources.map((s) => post(s, s === 'bad' ? 2 ** 40 : 7)),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
    );
    assert.equal(inserts.length, 5, 'the refused statement, then each row on its own');
    const ids = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.id] : []));
    const stored = await db('messages').whereIn('id', ids).orderBy('id').pluck('source');
    assert.deepEqual(stored, ['good 1', 'good 2', 'good 3']);
    assert.equal(await db('messages').where({ source: 'bad' }).first(), undefined);
  });

  it('writes one message for posts sent again with the same Idempotency-Key, even in one statement', async () => {
    inserts.length = 0;
    const key = `k-${Date.now()}`;
    // The same post three times in one turn (a retry racing the first), beside an unkeyed post and
    // another user's post with the same key.
    const results = await Promise.all([
      postKeyed('once', 7, key),
      postKeyed('once', 7, key),
      postKeyed('plain', 7),
      postKeyed('once', 7, key),
      postKeyed('theirs', 8, key),
    ]);
    const ids = results.map((r) => r.message.id);
    assert.equal(ids[0], ids[1]);
    assert.equal(ids[0], ids[3]);
    assert.notEqual(ids[0], ids[2]);
    assert.notEqual(ids[0], ids[4], "another user's key is another post");
    // One of the three made the message (which one depends on the race); the others got it.
    assert.equal([0, 1, 3].filter((i) => !results[i]?.replayed).length, 1);
    assert.equal(results[2]?.replayed, false);
    assert.equal(results[4]?.replayed, false);
    assert.equal(results[1]?.message.source, 'once');
    assert.equal(await countRows({ user_id: 7, idempotency_key: key }), 1);
    assert.equal(await countRows({ idempotency_key: key }), 2);
    // Later, on its own: answered from the row, with nothing written.
    const again = await postKeyed('once', 7, key);
    assert.equal(again.replayed, true);
    assert.equal(again.message.id, ids[0]);
    assert.equal(await countRows({ idempotency_key: key }), 2, 'a replay writes nothing');
  });
});
