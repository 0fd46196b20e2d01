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

  const post = (source: string, userId = 7) =>
    insertMessage(db, {
      source,
      html: `<p>${source}</p>`,
      user_id: userId,
      room_id: 1,
      preview_pending: false,
    });

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
});
