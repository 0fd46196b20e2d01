// Nicknames are identities (issue 18, item 1): look-alike forms (case, full-width, composed or
// decomposed accents) are one user, and characters that hide or disguise a name are refused with
// the reason. Through the service as clients reach it, on both databases.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import type { Knex } from '@microflack/common';
import { nicknameKey } from '@microflack/common/api';
import { basic, bearer, makeToken, startStack, type TestStack } from '@microflack/testkit';
import { DB_KINDS, usersApp } from '@microflack/testkit/apps';

const fullWidth = (s: string) =>
  [...s].map((c) => String.fromCodePoint((c.codePointAt(0) as number) + 0xfee0)).join('');

for (const kind of DB_KINDS) {
  describe(`nicknames as identities on ${kind}`, () => {
    let stack: TestStack;
    let app: Express;
    let db: Knex;

    before(async () => {
      stack = await startStack();
      ({ app, db } = await usersApp(stack, kind));
    });
    after(async () => {
      await db.destroy();
      await stack.stop();
    });

    const base = () => `Ada${randomBytes(3).toString('hex')}`;
    const register = (nickname: string, password = 'dog') =>
      request(app).post('/api/users').send({ nickname, password });

    it('refuses case, full-width and NFC/NFD variants of a taken nickname, keeping the display form', async () => {
      const name = base();
      const first = await register(name);
      assert.equal(first.status, 201);
      assert.equal(first.body.nickname, name, 'the chosen case is kept');
      for (const variant of [name.toLowerCase(), name.toUpperCase(), fullWidth(name)]) {
        const res = await register(variant);
        assert.equal(res.status, 400, variant);
        assert.deepEqual(res.body, { error: 'nickname already taken' }, variant);
      }
      const cafe = `caf\u00e9${randomBytes(2).toString('hex')}`; // composed é
      assert.equal((await register(cafe)).status, 201);
      const decomposed = cafe.normalize('NFD');
      assert.notEqual(decomposed, cafe);
      assert.equal((await register(decomposed)).status, 400, 'NFD form of a taken nickname');
    });

    it('stores the NFKC form, and signs in with any form of the nickname', async () => {
      const name = `ｋｉｍ${randomBytes(2).toString('hex')}`;
      const res = await register(name, 'secret');
      assert.equal(res.status, 201);
      assert.equal(res.body.nickname, name.normalize('NFKC'));
      for (const typed of [name, name.normalize('NFKC').toUpperCase()]) {
        const me = await request(app).get('/api/users/me').set(basic(typed, 'secret'));
        assert.equal(me.status, 200, typed);
        assert.equal(me.body.id, res.body.id);
      }
    });

    const hidden: Array<[string, string]> = [
      ['\u200b', 'U+200B'], // zero-width space, alone: a blank row
      ['Ada\u200b', 'U+200B'],
      ['\u202eadA', 'U+202E'], // right-to-left override
      ['Ada\u2028x', 'U+2028'], // line separator
      ['Ada\u0085x', 'U+0085'], // next line (C1 control)
      ['Ada\u{e0041}', 'U+E0041'], // tag character
      ['A\u00adda', 'U+00AD'], // soft hyphen
      ['\u3164', 'U+3164'], // Hangul filler
      ['Ada\u{10ffff}', 'U+10FFFF'], // unassigned
      ['Ada\ue000', 'U+E000'], // private use
    ];
    for (const [nickname, cp] of hidden) {
      it(`refuses ${JSON.stringify(nickname)} and says why (${cp})`, async () => {
        const res = await register(nickname);
        assert.equal(res.status, 400);
        assert.match(res.body.error, /^nickname /);
        assert.ok(res.body.error.includes(cp), res.body.error);
      });
    }

    it('lets a user change the case of their own nickname, not take another one', async () => {
      const name = base();
      const other = base();
      const me = (await register(name)).body as { id: number };
      await register(other).expect(201);
      const signedIn = await request(app).get('/api/users/me').set(basic(name, 'dog'));
      assert.equal(signedIn.body.id, me.id);
      const auth = bearer(makeToken(me.id));
      await request(app)
        .put(`/api/users/${me.id}`)
        .set(auth)
        .send({ nickname: name.toUpperCase() })
        .expect(204);
      const taken = await request(app)
        .put(`/api/users/${me.id}`)
        .set(auth)
        .send({ nickname: other.toLowerCase() });
      assert.equal(taken.status, 400);
      assert.deepEqual(taken.body, { error: 'nickname already taken' });
    });

    it('keys the identity by NFKC and case', () => {
      assert.equal(nicknameKey('ＡＤＡ'), nicknameKey('ada'));
      assert.equal(nicknameKey('cafe\u0301'), nicknameKey('caf\u00e9'));
      assert.notEqual(nicknameKey('ada'), nicknameKey('adb'));
    });
  });
}
