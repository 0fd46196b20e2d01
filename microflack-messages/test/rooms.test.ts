// Rooms, direct messages, privacy over REST, delete, history, unread and mentions, reactions and
// search (issue 16), on both databases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, startStack, type TestStack } from '@microflack/testkit';
import { startMessagesApp, type DbKind, type TestApp } from '@microflack/testkit/apps';
import request from 'supertest';
import { nowSeconds } from '../src/messages.js';

type U = { id: number; nickname: string; token: string };

for (const kind of ['mariadb', 'sqlite'] as DbKind[]) {
  describe(`rooms (${kind})`, () => {
    let stack: TestStack;
    let t: TestApp;
    let ada: U;
    let bob: U;
    let eve: U;
    before(async () => {
      stack = await startStack();
      t = await startMessagesApp(stack, kind);
      ada = await t.user('ada');
      bob = await t.user('bob');
      eve = await t.user('eve');
    });
    after(async () => {
      await t.close();
      await stack.stop();
    });

    const post = (u: U, source: string, roomId?: number) =>
      request(t.app)
        .post('/api/messages')
        .set(bearer(u.token))
        .send(roomId === undefined ? { source } : { source, room_id: roomId });
    const rooms = async (u?: U) => {
      const r = request(t.app).get('/api/rooms?limit=1000');
      const res = u ? await r.set(bearer(u.token)) : await r;
      assert.equal(res.status, 200);
      return res.body.rooms as Array<Record<string, unknown>>;
    };

    it('keeps general as room 1 and GET /api/messages as its last day', async () => {
      const general = await request(t.app).get('/api/rooms/1');
      assert.equal(general.status, 200);
      assert.equal(general.body.name, 'general');
      assert.equal(general.body.private, false);
      const room = await request(t.app)
        .post('/api/rooms')
        .set(bearer(ada.token))
        .send({ name: '  random ', topic: 'anything' });
      assert.equal(room.status, 201);
      assert.equal(room.body.name, 'random');
      assert.equal(room.headers.location, `/api/rooms/${room.body.id}`);
      const inRoom = await post(ada, 'only in random', room.body.id);
      assert.equal(inRoom.status, 201);
      assert.equal(inRoom.body.room_id, room.body.id);
      const inGeneral = await post(ada, 'in general');
      assert.equal(inGeneral.body.room_id, 1);
      const list = await request(t.app).get('/api/messages');
      const sources = list.body.messages.map((m: { source: string }) => m.source);
      assert.ok(sources.includes('in general'));
      assert.ok(!sources.includes('only in random'), 'the original list is general only');
      const roomList = await request(t.app).get(`/api/messages?room_id=${room.body.id}`);
      assert.deepEqual(
        roomList.body.messages.map((m: { source: string }) => m.source),
        ['only in random'],
      );
      // Bob sees it listed, must join to post, then may.
      assert.ok((await rooms(bob)).some((r) => r.id === room.body.id && r.member === false));
      assert.equal((await post(bob, 'hi', room.body.id)).status, 403);
      const joined = await request(t.app)
        .put(`/api/rooms/${room.body.id}/members/${bob.id}`)
        .set(bearer(bob.token));
      assert.equal(joined.status, 204);
      assert.equal((await post(bob, 'hi', room.body.id)).status, 201);
      const got = await request(t.app).get(`/api/rooms/${room.body.id}`).set(bearer(bob.token));
      assert.deepEqual(
        got.body.members,
        [ada.id, bob.id].sort((a, b) => a - b),
      );
      assert.equal(got.body.member, true);
      // Validation: 4xx naming the field.
      const bad = await request(t.app)
        .post('/api/rooms')
        .set(bearer(ada.token))
        .send({ name: ' ' });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error, 'name must not be empty');
      const bidi = await request(t.app)
        .post('/api/rooms')
        .set(bearer(ada.token))
        .send({ name: 'a\u202eb' });
      assert.equal(bidi.status, 400);
      assert.equal((await request(t.app).post('/api/rooms').send({ name: 'x' })).status, 401);
      assert.equal((await post(ada, 'x', 999999)).status, 404);
    });

    it('shows a private room, its messages and members to its members only', async () => {
      const room = await request(t.app)
        .post('/api/rooms')
        .set(bearer(ada.token))
        .send({ name: 'secret', private: true });
      assert.equal(room.status, 201);
      const id = room.body.id as number;
      // Eve cannot add herself, nor see it anywhere.
      const self = await request(t.app)
        .put(`/api/rooms/${id}/members/${eve.id}`)
        .set(bearer(eve.token));
      assert.equal(self.status, 404);
      assert.equal(
        (await request(t.app).put(`/api/rooms/${id}/members/${bob.id}`).set(bearer(ada.token)))
          .status,
        204,
      );
      const secret = await post(bob, 'the plan is ready', id);
      assert.equal(secret.status, 201);
      const mid = secret.body.id as number;
      for (const who of [eve, undefined]) {
        const auth = who ? bearer(who.token) : {};
        assert.ok(!(await rooms(who)).some((r) => r.id === id), 'not listed');
        for (const url of [
          `/api/rooms/${id}`,
          `/api/messages?room_id=${id}`,
          `/api/messages?room_id=${id}&before=latest`,
          `/api/messages?room_id=${id}&q=plan`,
          `/api/messages/${mid}`,
        ]) {
          const res = await request(t.app).get(url).set(auth);
          assert.equal(res.status, 404, url);
          assert.ok(!JSON.stringify(res.body).includes('plan is ready'), url);
        }
        const search = await request(t.app).get('/api/messages?q=plan').set(auth);
        assert.equal(search.status, 200);
        assert.ok(!search.body.messages.some((m: { id: number }) => m.id === mid), 'not found');
      }
      assert.equal((await post(eve, 'let me in', id)).status, 404);
      assert.equal(
        (await request(t.app).put(`/api/messages/${mid}/reactions/👍`).set(bearer(eve.token)))
          .status,
        404,
      );
      assert.equal(
        (
          await request(t.app)
            .put(`/api/rooms/${id}/read`)
            .set(bearer(eve.token))
            .send({ message_id: mid })
        ).status,
        404,
      );
      // Members read it.
      const list = await request(t.app).get(`/api/messages?room_id=${id}`).set(bearer(ada.token));
      assert.deepEqual(
        list.body.messages.map((m: { id: number }) => m.id),
        [mid],
      );
      // Only the creator removes others; a removed member reads no more.
      assert.equal(
        (await request(t.app).delete(`/api/rooms/${id}/members/${ada.id}`).set(bearer(bob.token)))
          .status,
        403,
      );
      assert.equal(
        (await request(t.app).delete(`/api/rooms/${id}/members/${bob.id}`).set(bearer(ada.token)))
          .status,
        204,
      );
      assert.equal(
        (await request(t.app).get(`/api/messages/${mid}`).set(bearer(bob.token))).status,
        404,
      );
      assert.equal(
        (
          await request(t.app)
            .delete('/api/rooms/1/members/' + ada.id)
            .set(bearer(ada.token))
        ).status,
        403,
      );
    });

    it('opens one direct room per pair, private to the two', async () => {
      const first = await request(t.app)
        .post('/api/rooms/direct')
        .set(bearer(ada.token))
        .send({ user_id: bob.id });
      assert.equal(first.status, 201);
      assert.equal(first.body.direct, true);
      assert.equal(first.body.private, true);
      const again = await request(t.app)
        .post('/api/rooms/direct')
        .set(bearer(bob.token))
        .send({ user_id: ada.id });
      assert.equal(again.status, 200);
      assert.equal(again.body.id, first.body.id);
      assert.equal(
        (await request(t.app).get(`/api/rooms/${first.body.id}`).set(bearer(eve.token))).status,
        404,
      );
      assert.equal(
        (
          await request(t.app)
            .put(`/api/rooms/${first.body.id}/members/${eve.id}`)
            .set(bearer(ada.token))
        ).status,
        403,
      );
      const nobody = await request(t.app)
        .post('/api/rooms/direct')
        .set(bearer(ada.token))
        .send({ user_id: 987654 });
      assert.equal(nobody.status, 404);
      assert.equal(nobody.body.error, 'user not found');
      const self = await request(t.app)
        .post('/api/rooms/direct')
        .set(bearer(ada.token))
        .send({ user_id: ada.id });
      assert.equal(self.status, 400);
      const junk = await request(t.app)
        .post('/api/rooms/direct')
        .set(bearer(ada.token))
        .send({ user_id: '2' });
      assert.equal(junk.status, 400);
    });

    it('deletes your own message: a tombstone, the text gone from the database and lists', async () => {
      const m = await post(ada, 'delete me please');
      const id = m.body.id as number;
      assert.equal(
        (await request(t.app).delete(`/api/messages/${id}`).set(bearer(bob.token))).status,
        403,
      );
      assert.equal((await request(t.app).delete(`/api/messages/${id}`)).status, 401);
      const del = await request(t.app).delete(`/api/messages/${id}`).set(bearer(ada.token));
      assert.equal(del.status, 204);
      const row = await t.db('messages').where({ id }).first('source', 'html');
      assert.deepEqual({ ...row }, { source: '', html: '' });
      const got = await request(t.app).get(`/api/messages/${id}`);
      assert.equal(got.body.deleted, true);
      assert.equal(got.body.source, '');
      const list = await request(t.app).get('/api/messages');
      assert.ok(!JSON.stringify(list.body).includes('delete me please'));
      assert.ok(
        list.body.messages.some((x: { id: number; deleted?: boolean }) => x.id === id && x.deleted),
      );
      const search = await request(t.app).get('/api/messages?q=delete+please');
      assert.ok(!search.body.messages.some((x: { id: number }) => x.id === id));
      assert.equal(
        (
          await request(t.app)
            .put(`/api/messages/${id}`)
            .set(bearer(ada.token))
            .send({ source: 'back' })
        ).status,
        403,
      );
      assert.equal(
        (await request(t.app).delete(`/api/messages/${id}`).set(bearer(ada.token))).status,
        204,
      );
    });

    it('pages back through history of any age without repeats', async () => {
      const room = await request(t.app)
        .post('/api/rooms')
        .set(bearer(ada.token))
        .send({ name: 'history' });
      const roomId = room.body.id as number;
      const old = nowSeconds() - 30 * 24 * 3600;
      const rows = Array.from({ length: 120 }, (_, i) => ({
        source: `old ${i}`,
        html: `old ${i}`,
        user_id: ada.id,
        room_id: roomId,
        created_at: old + i,
        updated_at: old + i,
      }));
      await t.db.batchInsert('messages', rows, 60);
      assert.deepEqual(
        (await request(t.app).get(`/api/messages?room_id=${roomId}`)).body.messages,
        [],
      );
      const seen: string[] = [];
      let url: string | undefined = `/api/messages?room_id=${roomId}&before=latest&limit=50`;
      let pages = 0;
      while (url) {
        const page = await request(t.app).get(url);
        assert.equal(page.status, 200);
        const ids = page.body.messages.map((m: { id: number }) => m.id);
        assert.deepEqual(
          ids,
          [...ids].sort((a: number, b: number) => a - b),
          'oldest first in a page',
        );
        seen.unshift(...page.body.messages.map((m: { source: string }) => m.source));
        url = page.body.next;
        pages++;
      }
      assert.equal(pages, 3);
      assert.deepEqual(
        seen,
        rows.map((r) => r.source),
      );
      const mixed = await request(t.app).get(`/api/messages?before=latest&updated_since=5`);
      assert.equal(mixed.status, 400);
      assert.equal((await request(t.app).get('/api/messages?before=0')).status, 400);
      assert.equal((await request(t.app).get('/api/messages?before=abc')).status, 400);
    });

    it('counts unread messages and mentions per member, up to the read marker', async () => {
      const room = await request(t.app)
        .post('/api/rooms')
        .set(bearer(ada.token))
        .send({ name: 'unread' });
      const roomId = room.body.id as number;
      await request(t.app).put(`/api/rooms/${roomId}/members/${bob.id}`).set(bearer(ada.token));
      await post(ada, 'one', roomId);
      await post(ada, `hey @${bob.nickname.toUpperCase()}, look`, roomId);
      const third = await post(ada, 'three', roomId);
      await post(bob, 'mine do not count', roomId);
      const mine = (await rooms(bob)).find((r) => r.id === roomId);
      assert.equal(mine?.unread, 3);
      assert.equal(mine?.mentions, 1);
      const read = await request(t.app)
        .put(`/api/rooms/${roomId}/read`)
        .set(bearer(bob.token))
        .send({ message_id: third.body.id });
      assert.equal(read.status, 204);
      const after = (await rooms(bob)).find((r) => r.id === roomId);
      assert.equal(after?.unread, 0);
      assert.equal(after?.mentions, 0);
      // The marker never goes back; a message of another room is refused.
      const general = await post(ada, 'elsewhere');
      assert.equal(
        (
          await request(t.app)
            .put(`/api/rooms/${roomId}/read`)
            .set(bearer(bob.token))
            .send({ message_id: general.body.id })
        ).status,
        404,
      );
      assert.equal(
        (
          await request(t.app)
            .put(`/api/rooms/${roomId}/read`)
            .set(bearer(bob.token))
            .send({ message_id: 'x' })
        ).status,
        400,
      );
      assert.equal(
        (await rooms()).find((r) => r.id === roomId)?.unread,
        undefined,
        'anonymous: no counts',
      );
    });

    it('takes reactions: counts and who, one emoji grapheme each', async () => {
      const m = await post(ada, 'react to me');
      const url = `/api/messages/${m.body.id}/reactions/${encodeURIComponent('👍🏽')}`;
      assert.equal((await request(t.app).put(url).set(bearer(ada.token))).status, 204);
      assert.equal((await request(t.app).put(url).set(bearer(bob.token))).status, 204);
      assert.equal((await request(t.app).put(url).set(bearer(bob.token))).status, 204);
      let got = await request(t.app).get(`/api/messages/${m.body.id}`);
      assert.deepEqual(got.body.reactions, [{ emoji: '👍🏽', count: 2, user_ids: [ada.id, bob.id] }]);
      assert.equal((await request(t.app).delete(url).set(bearer(ada.token))).status, 204);
      got = await request(t.app).get(`/api/messages/${m.body.id}`);
      assert.deepEqual(got.body.reactions, [{ emoji: '👍🏽', count: 1, user_ids: [bob.id] }]);
      for (const bad of ['x', '👍👍', '%3Cscript%3E', '1', '%E2%80%AE']) {
        const res = await request(t.app)
          .put(`/api/messages/${m.body.id}/reactions/${bad}`)
          .set(bearer(ada.token));
        assert.equal(res.status, 404, bad);
      }
      assert.equal((await request(t.app).put(url)).status, 401);
    });

    it('searches with the database full-text index, newest first, paged', async () => {
      const room = await request(t.app)
        .post('/api/rooms')
        .set(bearer(ada.token))
        .send({ name: 'search' });
      const roomId = room.body.id as number;
      for (let i = 0; i < 5; i++) await post(ada, `zebra crossing number ${i}`, roomId);
      await post(ada, 'zebra alone', roomId);
      const first = await request(t.app).get(
        `/api/messages?q=zebra+crossing&room_id=${roomId}&limit=3`,
      );
      assert.equal(first.status, 200);
      assert.deepEqual(
        first.body.messages.map((m: { source: string }) => m.source),
        ['zebra crossing number 4', 'zebra crossing number 3', 'zebra crossing number 2'],
      );
      const second = await request(t.app).get(first.body.next);
      assert.deepEqual(
        second.body.messages.map((m: { source: string }) => m.source),
        ['zebra crossing number 1', 'zebra crossing number 0'],
      );
      // Operators of either engine are words like any other, never syntax.
      for (const q of ['"zebra', 'zebra*', 'NEAR(zebra)', '+zebra -crossing', 'zebra OR x']) {
        const res = await request(t.app).get(
          `/api/messages?q=${encodeURIComponent(q)}&room_id=${roomId}`,
        );
        assert.equal(res.status, 200, q);
      }
      assert.equal((await request(t.app).get('/api/messages?q=%20')).status, 400);
      assert.equal((await request(t.app).get('/api/messages?q=!!!')).status, 400);
    });
  });
}
