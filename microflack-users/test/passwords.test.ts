// Password hashing under load (passwords.ts): hashes take turns, one per core; a hash that waited
// past its bound is refused at once, one whose client left is dropped, and neither is ever made.
// Real bcrypt at cost 13 (hundreds of ms a hash), so that a turn is never free by chance.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startStack, type TestStack } from '@microflack/testkit';
import { nick, usersApp } from '@microflack/testkit/apps';
import { createPasswords, PasswordsBusy } from '../src/passwords.js';

const ROUNDS = 13;

describe('password hashing under load', () => {
  it('refuses the hashes that waited past the bound, without making them', async () => {
    const passwords = createPasswords(ROUNDS, { concurrency: 1, maxWaitMs: 150 });
    const hash = await passwords.hash('pw-123456');
    let made = 0;
    const checks = Array.from({ length: 5 }, () =>
      passwords.verify('pw-123456', hash).then((ok) => {
        made++;
        return ok;
      }),
    );
    const results = await Promise.allSettled(checks);
    assert.equal(results[0]?.status, 'fulfilled', 'the first had its turn at once');
    assert.equal((results[0] as PromiseFulfilledResult<boolean>).value, true);
    for (const r of results.slice(1)) {
      assert.equal(r.status, 'rejected');
      assert.ok((r as PromiseRejectedResult).reason instanceof PasswordsBusy);
      assert.equal(((r as PromiseRejectedResult).reason as PasswordsBusy).abandoned, false);
    }
    assert.equal(made, 1);
    assert.equal(passwords.waiting, 0, 'refused hashes left in the queue');
  });

  it('drops a waiting hash whose client has gone', async () => {
    const passwords = createPasswords(ROUNDS, { concurrency: 1, maxWaitMs: 60000 });
    const running = passwords.hash('first');
    const client = new AbortController();
    const waiting = passwords.hash('second', client.signal);
    setTimeout(() => client.abort(), 20);
    await assert.rejects(waiting, (err: unknown) => err instanceof PasswordsBusy && err.abandoned);
    // The one running is not cut short: it is already being made.
    assert.match(await running, /^\$2[aby]\$13\$/);
    assert.equal(passwords.waiting, 0);
  });

  describe('over HTTP', () => {
    let stack: TestStack;
    let server: http.Server;
    let url: string;

    before(async () => {
      stack = await startStack();
      const { app } = await usersApp(stack, 'sqlite', {
        bcryptRounds: ROUNDS,
        passwordQueueWaitMs: 300,
      });
      server = http.createServer(app).listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
      server?.close();
      await stack?.stop();
    });

    it('answers a burst beyond bcrypt with 503 and Retry-After, and creates nothing for them', async () => {
      const nicknames = Array.from({ length: 8 }, () => nick('burst'));
      const answers = await Promise.all(
        nicknames.map(async (nickname) => {
          const res = await fetch(`${url}/api/users`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ nickname, password: 'pw-123456' }),
          });
          return {
            nickname,
            status: res.status,
            retry: res.headers.get('retry-after'),
            body: await res.json(),
          };
        }),
      );
      const created = answers.filter((a) => a.status === 201);
      const refused = answers.filter((a) => a.status === 503);
      assert.equal(created.length + refused.length, answers.length, JSON.stringify(answers));
      assert.ok(created.length >= 1, 'no registration had its turn');
      assert.ok(refused.length >= 1, 'a burst of 8 at cost 13 all waited their turn within 300 ms');
      for (const r of refused) {
        assert.equal(r.retry, '1');
        assert.deepEqual(r.body, { error: 'too many passwords to check, try again' });
        // Nothing was stored for a refused registration: the nickname is free.
        const again = await fetch(`${url}/api/users?limit=1000`);
        const list = (await again.json()) as { users: Array<{ nickname: string }> };
        assert.ok(!list.users.some((u) => u.nickname === r.nickname), `${r.nickname} stored`);
      }
    });
  });
});
