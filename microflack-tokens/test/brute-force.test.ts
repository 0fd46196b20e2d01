// Password guessing through POST /api/tokens and GET /api/users/me: slowed per nickname and per
// client address with 429 + Retry-After, never a lockout of the real user for good.
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import { createLbClient, logger, type Knex } from '@microflack/common';
import { basic, startStack, type TestStack } from '@microflack/testkit';
import { createApp } from '../src/app.js';
import { nick, usersApp } from '@microflack/testkit/apps';

logger.level = process.env.LOG_LEVEL ?? 'warn';

const THROTTLE = {
  freeFailuresPerNickname: 3,
  freeFailuresPerAddress: 8,
  baseDelayMs: 1000,
  maxDelayMs: 2000,
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('password guessing on POST /api/tokens and GET /api/users/me', () => {
  let stack: TestStack;
  let users: Express;
  let usersDb: Knex;
  let usersServer: Server;
  let tokens: Express;
  let address = 0;

  before(async () => {
    stack = await startStack();
    ({ app: users, db: usersDb } = await usersApp(stack, 'mariadb', { throttle: THROTTLE }));
    usersServer = users.listen(0, '127.0.0.1');
    await new Promise((r) => usersServer.once('listening', r));
    const platform = await stack.platform();
    tokens = createApp({
      auth: platform.auth,
      lb: createLbClient(`http://127.0.0.1:${(usersServer.address() as AddressInfo).port}`),
    });
  });
  after(async () => {
    usersServer.closeAllConnections();
    await new Promise((r) => usersServer.close(r));
    await usersDb.destroy();
    await stack.stop();
  });

  async function createUser(): Promise<string> {
    const nickname = nick('bf');
    await request(users).post('/api/users').send({ nickname, password: 'right' }).expect(201);
    return nickname;
  }
  // Each test speaks from addresses of its own (the apps trust one hop of X-Forwarded-For, as
  // from HAProxy; tokens vouches for it to users), so that the per-address counts of one do not
  // spill into another.
  const newAddress = () => `198.51.100.${++address}`;
  const viaTokens = (nickname: string, password: string, ip: string) =>
    request(tokens)
      .post('/api/tokens')
      .set(basic(nickname, password))
      .set('X-Forwarded-For', ip)
      .timeout(10000);
  const viaUsers = (nickname: string, password: string, ip: string) =>
    request(users)
      .get('/api/users/me')
      .set(basic(nickname, password))
      .set('X-Forwarded-For', ip)
      .timeout(10000);

  function assert429(res: request.Response): number {
    assert.equal(res.status, 429, res.text);
    assert.match(res.body.error, /too many/);
    const wait = Number(res.headers['retry-after']);
    assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= 2, `Retry-After ${wait}`);
    return wait;
  }

  it('answers 429 with Retry-After per nickname on POST /api/tokens, then lets the real user in', async () => {
    const nickname = await createUser();
    const guesser = newAddress();
    for (let i = 0; i < THROTTLE.freeFailuresPerNickname; i++) {
      assert.equal((await viaTokens(nickname, `guess${i}`, guesser)).status, 401);
    }
    // The guesser is slowed, on both routes (they share the count), the right password included...
    assert429(await viaTokens(nickname, 'guess', guesser));
    const wait = assert429(await viaUsers(nickname, 'right', guesser));
    // ...but the real user, from an address that has not been failing, is not held by it.
    const ok = await viaTokens(nickname, 'right', newAddress());
    assert.equal(ok.status, 200, ok.text);
    assert.equal(typeof ok.body.token, 'string');
    // And the guesser gets its turn back after the wait.
    await sleep(wait * 1000 + 100);
    assert.equal((await viaTokens(nickname, 'right', guesser)).status, 200);
  });

  it('answers 429 per client address across nicknames, leaving other addresses alone', async () => {
    const nicknames = await Promise.all(
      Array.from({ length: THROTTLE.freeFailuresPerAddress + 1 }, () => createUser()),
    );
    const guesser = newAddress();
    for (const n of nicknames.slice(0, THROTTLE.freeFailuresPerAddress)) {
      assert.equal((await viaTokens(n, 'wrong', guesser)).status, 401);
    }
    const last = nicknames[THROTTLE.freeFailuresPerAddress] as string;
    assert429(await viaTokens(last, 'wrong', guesser));
    assert429(await viaUsers(last, 'wrong', guesser));
    assert.equal((await viaTokens(last, 'right', newAddress())).status, 200);
  });

  it('counts per nickname over many addresses: one guess each, then each is slowed', async () => {
    const nickname = await createUser();
    const addresses = Array.from({ length: 12 }, () => newAddress());
    // Each fresh address is checked once (one at a time, in the nickname's clean lane)...
    for (const from of addresses) {
      assert.equal((await viaTokens(nickname, 'guess', from)).status, 401);
    }
    // ...and then held by the nickname's count, which they have all been failing.
    for (const from of addresses) assert429(await viaTokens(nickname, 'again', from));
  });

  it('does not let parallel guesses past the count: 50 at once, at most the free ones checked', async () => {
    const nickname = await createUser();
    for (const [name, call] of [
      ['POST /api/tokens', viaTokens],
      ['GET /api/users/me', viaUsers],
    ] as const) {
      await sleep(THROTTLE.maxDelayMs + 100);
      const guesser = newAddress();
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) => call(nickname, `parallel${i}`, guesser)),
      );
      const statuses = answers.map((r) => r.status);
      const checked = statuses.filter((s) => s === 401).length;
      console.log(
        `brute force ${name}: 50 parallel guesses, ${checked} checked, ${statuses.filter((s) => s === 429).length} answered 429`,
      );
      assert.ok(
        statuses.every((s) => s === 401 || s === 429),
        statuses.join(','),
      );
      assert.ok(
        checked <= THROTTLE.freeFailuresPerNickname,
        `${checked} guesses checked, more than the ${THROTTLE.freeFailuresPerNickname} free ones`,
      );
    }
    await sleep(THROTTLE.maxDelayMs + 100);
    assert.equal((await viaUsers(nickname, 'right', newAddress())).status, 200);
  });

  it('never locks the real user out: after a long guessing run, waiting Retry-After is enough', async () => {
    const nickname = await createUser();
    const guesser = newAddress();
    let tried = 0;
    let slowed = 0;
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const res = await viaTokens(nickname, 'wrong', guesser);
      tried++;
      if (res.status === 429) {
        slowed++;
        await sleep(200);
      } else assert.equal(res.status, 401);
    }
    const blocked = await viaTokens(nickname, 'right', newAddress());
    const wait = blocked.status === 429 ? assert429(blocked) : 0;
    await sleep(wait * 1000 + 100);
    const ok = await viaTokens(nickname, 'right', newAddress());
    assert.equal(ok.status, 200, ok.text);
    console.log(
      `brute force: ${tried} guesses in 5 s, ${slowed} answered 429, ${tried - slowed} checked; real user in after ${wait} s`,
    );
    assert.ok(tried - slowed <= 8, `${tried - slowed} guesses checked in 5 s`);
  });
});
