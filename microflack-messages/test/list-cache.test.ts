// The list answers from each message's kept JSON: these try to make it serve a stale or wrong one.
import { createDirectory } from '../src/directory.js';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { openDb, type Knex } from '@microflack/common';
import {
  bearer,
  createTestDatabase,
  startStack,
  tempDir,
  waitFor,
  type TestStack,
} from '@microflack/testkit';
import request from 'supertest';
import { createApp, type MessagesApp } from '../src/app.js';
import { createRowJsonCache, joinJson } from '@microflack/common';
import { nowSeconds, SECONDS_PER_DAY, toJson, type MessageRow } from '../src/messages.js';
import { migrations } from '../src/migrations.js';
import type { DbKind } from '@microflack/testkit/apps';

const COLUMNS = [
  'id',
  'created_at',
  'updated_at',
  'source',
  'html',
  'user_id',
  'room_id',
  'deleted',
  'reactions',
];

/** What the list answered before it kept JSON: every row read and serialised by res.json. */
async function reference(
  db: Knex,
  page: { userId?: number; limit?: number; after?: [number, number] } = {},
): Promise<string> {
  const q = db<MessageRow>('messages')
    .select(...COLUMNS)
    .where('room_id', 1)
    .andWhere('updated_at', '>=', nowSeconds() - SECONDS_PER_DAY)
    .orderBy([
      { column: 'updated_at', order: 'asc' },
      { column: 'id', order: 'asc' },
    ]);
  if (page.userId !== undefined) q.andWhere('user_id', page.userId);
  const [ts, id] = page.after ?? [];
  if (ts !== undefined && id !== undefined) {
    q.andWhere((w) =>
      w
        .where('updated_at', '>', ts)
        .orWhere((w2) => w2.where('updated_at', ts).andWhere('id', '>', id)),
    );
  }
  if (page.limit !== undefined) q.limit(page.limit);
  const rows: MessageRow[] = await q;
  const body: { messages: unknown[]; next?: string } = { messages: rows.map(toJson) };
  const last = rows.at(-1);
  if (page.limit !== undefined && rows.length === page.limit && last) {
    const params = new URLSearchParams();
    if (page.userId !== undefined) params.set('user_id', String(page.userId));
    params.set('limit', String(page.limit));
    params.set('after', `${last.updated_at},${last.id}`);
    body.next = `/api/messages?${params.toString()}`;
  }
  return JSON.stringify(body);
}

/** A page with one link to preview, answered only when the test says so. */
async function startSite() {
  const held: Array<() => void> = [];
  const server = http.createServer((_req, res) => {
    held.push(() =>
      res
        .writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
        .end('<html><head><title>cached?</title></head></html>'),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/page`,
    async release() {
      await waitFor('the preview request', () => held.length > 0, 5000);
      for (const answer of held.splice(0)) answer();
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('the row JSON cache', () => {
  it('answers only the exact version, and drops the least recently used past its bound', () => {
    const cache = createRowJsonCache(10);
    cache.set(1, 0, Buffer.from('aaaa'));
    cache.set(2, 0, Buffer.from('bbbb'));
    assert.equal(cache.get(1, 1), undefined, 'another version is a miss');
    assert.equal(cache.get(1, 0)?.toString(), 'aaaa');
    cache.set(3, 0, Buffer.from('cccc')); // 12 bytes: 2 is the least recent, so it goes
    assert.equal(cache.get(2, 0), undefined);
    assert.equal(cache.get(1, 0)?.toString(), 'aaaa');
    assert.equal(cache.get(3, 0)?.toString(), 'cccc');
    assert.equal(cache.bytes, 8);
    cache.set(1, 1, Buffer.from('a2'));
    assert.equal(cache.get(1, 0), undefined, 'a new version replaces the old');
    assert.equal(cache.entries, 2);
    cache.set(4, 0, Buffer.alloc(11));
    assert.equal(cache.get(4, 0), undefined, 'larger than the whole bound: not kept');
    assert.equal(joinJson('[', [Buffer.from('1'), Buffer.from('2')], ']').toString(), '[1,2]');
    assert.equal(joinJson('[', [], ']').toString(), '[]');
  });
});

for (const kind of ['mariadb', 'sqlite'] as DbKind[]) {
  describe(`the message list never serves a stale row (${kind})`, () => {
    let stack: TestStack;
    let site: Awaited<ReturnType<typeof startSite>>;
    // Two instances on one database, each with its own connection pool and cache.
    let dbA: Knex;
    let dbB: Knex;
    let a: MessagesApp;
    let b: MessagesApp;
    let token: string;
    let tokenFor: (userId: number) => string;

    before(async () => {
      stack = await startStack();
      site = await startSite();
      const databaseUrl = kind === 'mariadb' ? await createTestDatabase('msgcache') : undefined;
      const home = tempDir('msgcache-home');
      dbA = await openDb({ databaseUrl, home, service: 'messages' }, migrations);
      dbB = await openDb({ databaseUrl, home, service: 'messages' }, migrations);
      const platform = await stack.platform();
      const deps = {
        auth: platform.auth,
        events: platform.events,
        directory: createDirectory(platform.lb),
      };
      a = createApp({ ...deps, db: dbA, previews: { allowPrivate: true } });
      b = createApp({ ...deps, db: dbB, previews: { allowPrivate: true } });
      tokenFor = (userId) => platform.auth.generateToken(userId);
      token = tokenFor(1);
    });
    after(async () => {
      await a.previewer.close();
      await b.previewer.close();
      await dbA.destroy();
      await dbB.destroy();
      await site.close();
      await stack.stop();
    });

    async function post(app: MessagesApp, source: string): Promise<number> {
      const res = await request(app).post('/api/messages').set(bearer(token)).send({ source });
      assert.equal(res.status, 201);
      return res.body.id as number;
    }
    async function edit(app: MessagesApp, id: number, source: string): Promise<void> {
      const res = await request(app).put(`/api/messages/${id}`).set(bearer(token)).send({ source });
      assert.equal(res.status, 204);
    }
    /** The list from `app`, checked byte for byte against the uncached answer. */
    async function list(app: MessagesApp): Promise<Array<ReturnType<typeof toJson>>> {
      const res = await request(app).get('/api/messages');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(res.text, await reference(dbA));
      return res.body.messages;
    }
    const find = <T extends { id: number }>(messages: T[], id: number) =>
      messages.find((m) => m.id === id);

    it('answers the same bytes as serialising every row, before and after it has kept them', async () => {
      await post(a, 'first *one*');
      await post(a, 'second, with "quotes", \\ and ünïcödé ✓ \u2028');
      const cold = await request(a).get('/api/messages');
      const warm = await request(a).get('/api/messages');
      assert.equal(cold.text, warm.text);
      assert.equal(warm.text, await reference(dbA));
      assert.ok(warm.body.messages.length >= 2);
    });

    it('shows both of two edits made within one second (updated_at unchanged by the second)', async () => {
      const id = await post(a, 'version zero');
      let sameSecond = false;
      for (let attempt = 0; attempt < 5 && !sameSecond; attempt++) {
        await list(a);
        await edit(a, id, `edit one ${attempt}`);
        const one = find(await list(a), id);
        assert.equal(one?.source, `edit one ${attempt}`);
        await edit(a, id, `edit two ${attempt}`);
        const two = find(await list(a), id);
        assert.equal(two?.source, `edit two ${attempt}`);
        sameSecond = one?.updated_at === two?.updated_at;
      }
      assert.ok(sameSecond, 'two edits never landed in one second in five tries');
    });

    it('shows a write that leaves updated_at as it was, whoever makes it (raw SQL)', async () => {
      const id = await post(a, 'before');
      const listed = find(await list(a), id);
      await dbB('messages').where({ id }).update({ html: 'changed by hand' });
      const after = find(await list(a), id);
      assert.equal(after?.html, 'changed by hand');
      assert.equal(after?.updated_at, listed?.updated_at);
    });

    it('shows a link preview written right after the post, in the same second', async () => {
      const id = await post(a, `look: ${site.url}`);
      const first = find(await list(a), id);
      assert.doesNotMatch(first?.html ?? '', /cached\?/, 'listed before the preview is written');
      await site.release();
      await a.previewer.idle();
      const previewed = find(await list(a), id);
      assert.match(previewed?.html ?? '', /cached\?/);
      const single = await request(a).get(`/api/messages/${id}`);
      assert.deepEqual(previewed, single.body);
    });

    it('shows through one instance the edits made through the other', async () => {
      const id = await post(a, 'from A');
      await list(a);
      await list(b);
      await edit(b, id, 'edited through B');
      assert.equal(find(await list(a), id)?.source, 'edited through B');
      await edit(a, id, 'edited through A');
      assert.equal(find(await list(b), id)?.source, 'edited through A');
      assert.equal(find(await list(a), id)?.source, 'edited through A');
    });

    it('pages as the uncached query does over kept rows, with an edit between pages', async () => {
      const mine = tokenFor(2);
      const ids: number[] = [];
      for (let i = 0; i < 7; i++) {
        const res = await request(a)
          .post('/api/messages')
          .set(bearer(mine))
          .send({ source: `page ${i}` });
        ids.push(res.body.id as number);
      }
      // Every row kept by both instances first.
      assert.equal(
        (await request(a).get('/api/messages?user_id=2')).text,
        await reference(dbA, { userId: 2 }),
      );
      assert.equal(
        (await request(b).get('/api/messages?user_id=2')).text,
        await reference(dbA, { userId: 2 }),
      );
      const seen: Array<{ id: number; source: string }> = [];
      let after: [number, number] | undefined;
      let pages = 0;
      for (;;) {
        const url = `/api/messages?user_id=2&limit=3${after ? `&after=${after.join(',')}` : ''}`;
        const page = await request(pages % 2 ? b : a).get(url);
        assert.equal(page.status, 200);
        assert.equal(page.text, await reference(dbA, { userId: 2, limit: 3, after }));
        seen.push(...page.body.messages);
        if (!page.body.next) break;
        const last = page.body.messages.at(-1);
        after = [last.updated_at, last.id];
        if (pages++ === 0) {
          // Edited (through the other instance) after the first page listed it.
          await request(b)
            .put(`/api/messages/${ids[4]}`)
            .set(bearer(mine))
            .send({ source: 'page 4, edited' });
        }
        assert.ok(pages < 10);
      }
      assert.equal(seen.filter((m) => m.id === ids[4]).at(-1)?.source, 'page 4, edited');
      assert.deepEqual(new Set(seen.map((m) => m.id)), new Set(ids));
    });

    it('stays correct with a cache too small to keep anything but one message', async () => {
      const platform = await stack.platform();
      const tiny = createApp({
        db: dbB,
        auth: platform.auth,
        directory: createDirectory(platform.lb),
        events: platform.events,
        jsonCacheBytes: 400,
      });
      const id = await post(tiny, 'tiny cache');
      await list(tiny);
      await edit(a, id, 'tiny cache, edited');
      assert.equal(find(await list(tiny), id)?.source, 'tiny cache, edited');
      await tiny.previewer.close();
    });
  });
}
