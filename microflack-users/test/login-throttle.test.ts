import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import type { Knex } from '@microflack/common';
import { basic, startStack, type TestStack } from '@microflack/common/testing';
import { createLoginThrottle } from '../src/login-throttle.js';
import { nick, usersApp } from './helpers.js';

describe('createLoginThrottle', () => {
  it('lets the free failures through, then doubles the wait up to the ceiling, then forgets', () => {
    let t = 0;
    const th = createLoginThrottle(
      {
        freeFailuresPerNickname: 2,
        freeFailuresPerAddress: 100,
        baseDelayMs: 1000,
        maxDelayMs: 4000,
        forgetAfterMs: 60000,
      },
      () => t,
    );
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const wait = th.waitMs('ada', 'ip');
      waits.push(wait);
      t += wait;
      assert.equal(th.waitMs('ada', 'ip'), 0, 'free to try once the wait is over');
      th.failed('ada', 'ip');
    }
    assert.deepEqual(waits, [0, 0, 1000, 2000, 4000, 4000]);
    assert.equal(th.waitMs('bob', 'ip'), 0, 'other nicknames are not slowed');
    t += 60001;
    assert.equal(th.waitMs('ada', 'ip'), 0, 'forgotten after a quiet period');
  });

  it('resets a nickname on success but not the address', () => {
    const th = createLoginThrottle(
      { freeFailuresPerNickname: 1, freeFailuresPerAddress: 1 },
      () => 0,
    );
    th.failed('ada', 'ip');
    assert.ok(th.waitMs('ada', 'other-ip') > 0);
    th.succeeded('ada');
    assert.equal(th.waitMs('ada', 'other-ip'), 0);
    assert.ok(th.waitMs('zed', 'ip') > 0);
  });

  it('keeps at most maxEntries keys', () => {
    const th = createLoginThrottle({ freeFailuresPerNickname: 0, maxEntries: 10 }, () => 0);
    for (let i = 0; i < 1000; i++) th.failed(`n${i}`, 'ip');
    assert.equal(th.waitMs('n0', 'nowhere'), 0, 'the oldest were dropped');
    assert.ok(th.waitMs('n999', 'nowhere') > 0);
  });
});

describe('GET /api/users/me under password guessing', () => {
  let stack: TestStack;
  let app: Express;
  let db: Knex;

  before(async () => {
    stack = await startStack();
    ({ app, db } = await usersApp(stack, 'sqlite', {
      throttle: {
        freeFailuresPerNickname: 3,
        freeFailuresPerAddress: 6,
        baseDelayMs: 1000,
        maxDelayMs: 2000,
      },
    }));
  });
  after(async () => {
    await db.destroy();
    await stack.stop();
  });

  async function createUser() {
    const nickname = nick('g');
    await request(app).post('/api/users').send({ nickname, password: 'right' }).expect(201);
    return nickname;
  }

  // The app trusts X-Forwarded-For from loopback (HAProxy), so tests can speak for many clients.
  const me = (nickname: string, password: string, ip: string) =>
    request(app).get('/api/users/me').set(basic(nickname, password)).set('X-Forwarded-For', ip);

  it('answers 429 with Retry-After per nickname after repeated failures, then lets the user in', async () => {
    const nickname = await createUser();
    for (let i = 0; i < 3; i++) assert.equal((await me(nickname, 'wrong', '10.0.0.1')).status, 401);
    const blocked = await me(nickname, 'right', '10.0.0.2');
    assert.equal(blocked.status, 429);
    assert.equal(blocked.headers['retry-after'], '1');
    assert.match(blocked.body.error, /too many/);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await me(nickname, 'right', '10.0.0.2')).status, 200);
    // Success cleared the nickname's count.
    assert.equal((await me(nickname, 'wrong', '10.0.0.3')).status, 401);
  });

  it('answers 429 per client address across nicknames, leaving other addresses alone', async () => {
    const nicknames = await Promise.all([1, 2, 3, 4, 5, 6, 7].map(() => createUser()));
    for (const n of nicknames.slice(0, 6)) {
      assert.equal((await me(n, 'wrong', '10.0.1.1')).status, 401);
    }
    const blocked = await me(nicknames[6]!, 'right', '10.0.1.1');
    assert.equal(blocked.status, 429);
    assert.ok(Number(blocked.headers['retry-after']) >= 1);
    assert.equal((await me(nicknames[6]!, 'right', '10.0.1.2')).status, 200);
  });

  it('never locks out for good: waiting the longest delay always allows another try', async () => {
    const nickname = await createUser();
    for (let round = 0; round < 5; round++) {
      const res = await me(nickname, 'wrong', '10.0.2.1');
      if (res.status === 429) {
        const wait = Number(res.headers['retry-after']);
        assert.ok(wait >= 1 && wait <= 2, `Retry-After ${wait} within the 2 s ceiling`);
        await new Promise((r) => setTimeout(r, wait * 1000 + 50));
        assert.equal((await me(nickname, 'wrong', '10.0.2.1')).status, 401);
      } else {
        assert.equal(res.status, 401);
      }
    }
    await new Promise((r) => setTimeout(r, 2050));
    assert.equal((await me(nickname, 'right', '10.0.2.1')).status, 200);
  });
});
