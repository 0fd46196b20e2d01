import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import type { Knex } from '@microflack/common';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  basic,
  startRedis,
  startStack,
  waitFor,
  type RedisServer,
  type TestStack,
} from '@microflack/testkit';
import {
  createLoginThrottle,
  createThrottleRedis,
  THROTTLE_REDIS_TIMEOUT_MS,
  type AttemptOrWait,
  type LoginAttempt,
  type LoginThrottle,
  type ThrottleOptions,
} from '../src/login-throttle.js';
import { nick, usersApp } from '@microflack/testkit/apps';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function attemptOf(turn: AttemptOrWait): LoginAttempt {
  assert.ok('attempt' in turn, `expected to go ahead, told to wait ${turn.waitMs} ms`);
  return turn.attempt;
}

// The throttle's rules, on both stores: Redis (shared by instances) and memory (one instance alone,
// and the insurance while Redis is away). Real time: waits are whole seconds in Redis.
for (const store of ['redis', 'memory'] as const) {
  describe(`createLoginThrottle (${store})`, { concurrency: true }, () => {
    let stack: TestStack;
    let redis: Redis | undefined;

    before(async () => {
      stack = await startStack();
      if (store === 'redis') {
        const client = createThrottleRedis(stack.redis);
        redis = client;
        // Until then its commands would go to memory (the insurance), not to Redis.
        await waitFor('redis ready', () => client.status === 'ready', 5000);
      }
    });
    after(async () => {
      redis?.disconnect();
      await stack.stop();
    });

    // Keys of its own in the shared Redis, for each test.
    const make = (opts: Partial<ThrottleOptions>) =>
      createLoginThrottle({ redis, keyPrefix: `test:${randomUUID()}`, ...opts });

    it('lets the free failures through, then doubles the wait up to the ceiling, then forgets', async () => {
      const th = make({
        freeFailuresPerNickname: 2,
        freeFailuresPerAddress: 100,
        baseDelayMs: 1000,
        maxDelayMs: 2000,
        forgetAfterMs: 3000,
      });
      assert.equal(th.store, store);
      const waits: number[] = [];
      for (let i = 0; i < 5; i++) {
        let turn = await th.begin('ada', 'ip');
        waits.push(Math.ceil(turn.waitMs / 1000) * 1000);
        if (turn.waitMs > 0) {
          await sleep(turn.waitMs + 20);
          turn = await th.begin('ada', 'ip');
          assert.equal(turn.waitMs, 0, 'free to try once the wait is over');
        }
        await attemptOf(turn).failed();
      }
      assert.deepEqual(waits, [0, 0, 1000, 2000, 2000]);
      const other = await th.begin('bob', 'ip');
      assert.equal(other.waitMs, 0, 'other nicknames are not slowed');
      await attemptOf(other).release();
      // The last wait (2 s) is over after 2 s; the count is forgotten 3 s after the last failure.
      await sleep(2100);
      const counted = await th.begin('ada', 'ip');
      assert.equal(counted.waitMs, 0);
      await attemptOf(counted).failed();
      assert.ok((await th.begin('ada', 'ip')).waitMs > 1000, 'still counted: the wait doubled');
      await sleep(3100);
      const forgotten = await th.begin('ada', 'ip');
      assert.equal(forgotten.waitMs, 0, 'forgotten after a quiet period');
      await attemptOf(forgotten).failed();
      const free = await th.begin('ada', 'ip');
      assert.equal(free.waitMs, 0, 'the free failures are free again');
      await attemptOf(free).release();
    });

    it('resets a nickname on success but not the address', async () => {
      const th = make({ freeFailuresPerNickname: 1, freeFailuresPerAddress: 1, baseDelayMs: 1000 });
      await attemptOf(await th.begin('ada', 'ip1')).failed();
      const slowed = await th.begin('ada', 'ip1');
      assert.ok(slowed.waitMs > 0);
      await sleep(slowed.waitMs + 20);
      await attemptOf(await th.begin('ada', 'ip1')).succeeded();
      const again = await th.begin('ada', 'ip2');
      assert.equal(again.waitMs, 0, 'the nickname was reset');
      await attemptOf(again).release();
      // An address: one failure, its wait, then a success from it (another nickname)...
      await attemptOf(await th.begin('zed', 'ip3')).failed();
      const wait = (await th.begin('bob', 'ip3')).waitMs;
      assert.ok(wait > 0 && wait <= 1000, `${wait}`);
      await sleep(wait + 20);
      await attemptOf(await th.begin('bob', 'ip3')).succeeded();
      // ...keeps its count: its next failure is its second, followed by twice the wait.
      await attemptOf(await th.begin('amy', 'ip3')).failed();
      const doubled = (await th.begin('eve', 'ip3')).waitMs;
      assert.ok(doubled > 1000 && doubled <= 2000, `${doubled}`);
    });

    it('lets only the free attempts start at once, and frees them when they end', async () => {
      const th = make({
        freeFailuresPerNickname: 2,
        freeFailuresPerAddress: 100,
        baseDelayMs: 1000,
      });
      const a = attemptOf(await th.begin('ada', 'ip'));
      const b = attemptOf(await th.begin('ada', 'ip2'));
      assert.equal(
        (await th.begin('ada', 'ip3')).waitMs,
        1000,
        'a third waits while two are being checked',
      );
      const bob = attemptOf(await th.begin('bob', 'ip'));
      await bob.release();
      // Both checks end without a failure (a database error, say): nothing stays held.
      await a.release();
      await b.release();
      await attemptOf(await th.begin('ada', 'ip3')).release();
      // Two that fail from one address: then the usual wait applies to it, from the last failure.
      for (let i = 0; i < 2; i++) await attemptOf(await th.begin('ada', 'ip')).failed();
      const wait = (await th.begin('ada', 'ip')).waitMs;
      assert.equal(Math.ceil(wait / 1000), 1, `${wait}`);
      await sleep(wait + 20);
      const third = attemptOf(await th.begin('ada', 'ip'));
      assert.equal(
        (await th.begin('ada', 'ip')).waitMs,
        2000,
        'one at a time once over the free count',
      );
      await third.release();
    });

    it('holds the address count too, once the address has failed', async () => {
      const th = make({ freeFailuresPerNickname: 100, freeFailuresPerAddress: 2 });
      await attemptOf(await th.begin('x', 'ip')).failed();
      const a = attemptOf(await th.begin('a', 'ip'));
      assert.ok(
        (await th.begin('b', 'ip')).waitMs > 0,
        'the attempt in flight counts as the second failure',
      );
      const other = attemptOf(await th.begin('b', 'other'));
      await Promise.all([a.release(), other.release()]);
    });

    it('does not hold an address without failures by its honest sign-ins in flight', async () => {
      const th = make({ freeFailuresPerNickname: 5, freeFailuresPerAddress: 2 });
      const turns = await Promise.all(
        Array.from({ length: 50 }, (_, i) => th.begin(`user${i}`, 'nat')),
      );
      assert.deepEqual(
        turns.map((t) => t.waitMs),
        turns.map(() => 0),
      );
      await Promise.all(turns.map((t) => attemptOf(t).succeeded()));
    });

    it('lets exactly the free attempts through a burst of parallel guesses, however many instances', async () => {
      // Instances share Redis; in memory each counts alone, so this is one instance there.
      const keyPrefix = `test:${randomUUID()}`;
      const extra = store === 'redis' ? createThrottleRedis(stack.redis) : undefined;
      if (extra) await waitFor('redis ready', () => extra.status === 'ready', 5000);
      const instances = [
        createLoginThrottle({ redis, keyPrefix, freeFailuresPerNickname: 4 }),
        ...(extra
          ? [createLoginThrottle({ redis: extra, keyPrefix, freeFailuresPerNickname: 4 })]
          : []),
      ];
      try {
        const turns = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (instances[i % instances.length] as LoginThrottle).begin('ada', `ip${i}`),
          ),
        );
        // 3 free ones, and one at a time in the clean lane (every address is fresh).
        const went = turns.filter((t) => 'attempt' in t);
        assert.equal(went.length, 4);
        await Promise.all(went.map((t) => attemptOf(t).failed()));
        const failedFrom = turns.findIndex((t) => 'attempt' in t);
        const after = await Promise.all(instances.map((t) => t.begin('ada', `ip${failedFrom}`)));
        for (const t of after) assert.ok(t.waitMs > 0, 'a failing address is slowed');
        const fresh = await instances[0]!.begin('ada', 'fresh');
        assert.equal(fresh.waitMs, 0, 'a fresh address is checked');
        await attemptOf(fresh).release();
      } finally {
        extra?.disconnect();
      }
    });

    it('orders an attempt the same in every count: a burst from one address over three instances gets exactly the free checks', async () => {
      // Nickname and (nickname, address) both allow 5: an attempt ahead in one count and behind in
      // the other would hold the pair's turn while one within the nickname's free ones waited.
      const keyPrefix = `test:${randomUUID()}`;
      const extras =
        store === 'redis'
          ? [createThrottleRedis(stack.redis), createThrottleRedis(stack.redis)]
          : [];
      for (const e of extras) await waitFor('redis ready', () => e.status === 'ready', 5000);
      const opts = { keyPrefix, freeFailuresPerNickname: 5, freeFailuresPerNicknameAddress: 5 };
      const instances = [redis, ...extras].map((r) => createLoginThrottle({ redis: r, ...opts }));
      try {
        for (let round = 0; round < 10; round++) {
          const turns = await Promise.all(
            Array.from({ length: 30 }, (_, i) =>
              (instances[i % instances.length] as LoginThrottle).begin(
                `burst${round}`,
                `guesser${round}`,
              ),
            ),
          );
          const went = turns.filter((t) => 'attempt' in t);
          assert.equal(went.length, 5, `round ${round}`);
          await Promise.all(went.map((t) => attemptOf(t).failed()));
        }
      } finally {
        for (const e of extras) e.disconnect();
      }
    });

    it('lets guesses from one fresh address have the free checks and not one more, and still lets the real user in', async () => {
      const throttle = createLoginThrottle({
        redis,
        keyPrefix: `test:${randomUUID()}`,
        freeFailuresPerNickname: 3,
      });
      const begin = () => throttle.begin('grace', 'guesser');
      // Three overlapping guesses go (the third holds the nickname's turn)...
      const first = [await begin(), await begin(), await begin()];
      for (const t of first) assert.equal(t.waitMs, 0);
      // ...one fails while the others are still checked: the address has failed now, but no
      // guess of it gets past the one holding the turn (it used to take a second way in).
      await attemptOf(first[0]!).failed();
      assert.ok((await begin()).waitMs > 0, 'a fourth overlapping guess waits');
      // A burst is held the same way.
      const burst = await Promise.all(Array.from({ length: 20 }, begin));
      assert.equal(burst.filter((t) => 'attempt' in t).length, 0);
      await Promise.all(first.slice(1).map((t) => attemptOf(t).failed()));
      assert.ok((await begin()).waitMs > 0, 'the guesser waits');
      const real = await throttle.begin('grace', 'home');
      assert.equal(real.waitMs, 0, 'an address that has not been failing is checked');
      await attemptOf(real).succeeded();
    });
  });
}

describe('createLoginThrottle with Redis away', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  const stopped: number[] = [];

  before(async () => {
    redisServer = await startRedis();
    redis = createThrottleRedis(redisServer.hostPort);
    await waitFor('redis ready', () => redis.status === 'ready', 5000);
  });
  after(async () => {
    for (const pid of stopped) process.kill(pid, 'SIGCONT');
    redis.disconnect();
    await redisServer.stop();
  });

  const limits = { freeFailuresPerNickname: 2, freeFailuresPerAddress: 100, baseDelayMs: 3000 };

  async function guessUntilSlowed(th: LoginThrottle, nickname: string): Promise<number[]> {
    const tookMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      const turn = await th.begin(nickname, 'ip');
      if ('attempt' in turn) await turn.attempt.failed();
      tookMs.push(Date.now() - t0);
      if (turn.waitMs > 0) {
        assert.equal(i, limits.freeFailuresPerNickname, 'slowed right after the free failures');
        return tookMs;
      }
    }
    assert.fail('never slowed');
  }

  it('still throttles, in memory, when Redis hangs: every command gives up within the timeout', async () => {
    const th = createLoginThrottle({ redis, keyPrefix: `test:${randomUUID()}`, ...limits });
    // Stopped, not gone: the connection stays up and commands get no answer.
    process.kill(redisServer.proc.pid, 'SIGSTOP');
    stopped.push(redisServer.proc.pid);
    const tookMs = await guessUntilSlowed(th, 'hung');
    // An attempt is a few commands in sequence (count, turn, failure), each bounded.
    for (const ms of tookMs) assert.ok(ms < 4 * THROTTLE_REDIS_TIMEOUT_MS + 500, `${tookMs}`);
    process.kill(redisServer.proc.pid, 'SIGCONT');
    stopped.pop();
    await waitFor('redis answering', async () => (await redis.ping()) === 'PONG', 5000);
  });

  it('still throttles, in memory, when Redis is down, without waiting for it', async () => {
    const th = createLoginThrottle({ redis, keyPrefix: `test:${randomUUID()}`, ...limits });
    await redisServer.stop();
    await waitFor('the client to see Redis gone', () => redis.status !== 'ready', 5000);
    const tookMs = await guessUntilSlowed(th, 'down');
    for (const ms of tookMs) assert.ok(ms < 100, `${tookMs}`);
    await redisServer.start();
    await waitFor('redis ready again', () => redis.status === 'ready', 10000);
    // Back on Redis, where the memory counts are not: the shared count starts afresh.
    const turn = await th.begin('down', 'ip');
    assert.equal(turn.waitMs, 0);
    await attemptOf(turn).release();
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

  // The app trusts one hop of X-Forwarded-For (HAProxy's), so tests can speak for many clients.
  const me = (nickname: string, password: string, ip: string) =>
    request(app).get('/api/users/me').set(basic(nickname, password)).set('X-Forwarded-For', ip);

  it('answers 429 with Retry-After per nickname after repeated failures, then lets the user in', async () => {
    const nickname = await createUser();
    for (let i = 0; i < 3; i++) assert.equal((await me(nickname, 'wrong', '10.0.0.1')).status, 401);
    const blocked = await me(nickname, 'right', '10.0.0.1');
    assert.equal(blocked.status, 429);
    assert.equal(blocked.headers['retry-after'], '1');
    assert.match(blocked.body.error, /too many/);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await me(nickname, 'right', '10.0.0.1')).status, 200);
    // Success cleared the nickname's count.
    assert.equal((await me(nickname, 'wrong', '10.0.0.3')).status, 401);
  });

  it('never lets a stranger keep the real user out: 25 wrong passwords from changing addresses', async () => {
    // Issue 18 item 3: these used to make the correct password answer 429, from anywhere.
    const nickname = await createUser();
    for (let i = 1; i <= 25; i++) {
      assert.equal((await me(nickname, 'wrong', `10.0.3.${i}`)).status, 401, `guess ${i}`);
    }
    // A guessing address is slowed on its next try, as the loose per-nickname count says...
    const again = await me(nickname, 'wrong', '10.0.3.25');
    assert.equal(again.status, 429);
    // ...while the real user, from an address that has not been failing, is checked at once.
    assert.equal((await me(nickname, 'right', '10.0.3.200')).status, 200);
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
