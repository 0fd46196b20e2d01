// Sign-in hygiene on the platform as deployed: three users instances, tokens and messages behind a
// real HAProxy, with a Redis of the platform's own. The throttle of failed sign-ins is shared by
// the instances (and falls back to each instance's memory when Redis stops), counts the address
// HAProxy saw whatever X-Forwarded-For a client sends, and a password change or "sign out
// everywhere" revokes the older tokens without locking the client out of its new one.
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { basic, bearer, waitFor } from '@microflack/testkit';
import { startPlatform, type Platform } from '@microflack/testkit/platform';

// What each users instance is started with.
const FREE_PER_NICKNAME = 5;
const FREE_PER_ADDRESS = 8;
const BASE_DELAY_MS = 3000;
const MAX_DELAY_MS = 2 * BASE_DELAY_MS;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sign-in throttle and token hygiene through the load balancer', () => {
  let platform: Platform;
  let lbPort: number;
  // Each test speaks from loopback addresses of its own (127.0.0.x): that is the address HAProxy
  // sees, so their per-address counts stay apart.
  let nextHost = 10;
  const newSource = () => `127.0.0.${++nextHost}`;

  before(async () => {
    platform = await startPlatform({
      services: ['users', 'tokens', 'messages'],
      env: {
        users: {
          LOGIN_FREE_FAILURES_PER_NICKNAME: String(FREE_PER_NICKNAME),
          LOGIN_FREE_FAILURES_PER_ADDRESS: String(FREE_PER_ADDRESS),
          LOGIN_BASE_DELAY_MS: String(BASE_DELAY_MS),
          LOGIN_MAX_DELAY_MS: String(MAX_DELAY_MS),
        },
      },
    });
    await platform.startService('users');
    await platform.startService('users');
    lbPort = Number(new URL(platform.url).port);
  });
  after(async () => {
    await platform?.stop();
  });

  /** One request to the LB from a given loopback address, on a connection of its own. */
  function call(
    method: string,
    path: string,
    opts: { from?: string; headers?: Record<string, string>; body?: unknown } = {},
  ): Promise<Answer> {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: lbPort,
          method,
          path,
          localAddress: opts.from ?? '127.0.0.1',
          agent: false,
          timeout: 10000,
          headers: {
            ...(body ? { 'content-type': 'application/json' } : {}),
            ...opts.headers,
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (text += d));
          res.on('end', () => {
            let parsed: Record<string, unknown>;
            try {
              parsed = text ? JSON.parse(text) : {};
            } catch {
              parsed = { text };
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  async function signUp(password = 'right'): Promise<{ id: number; nickname: string }> {
    const nickname = `th${randomBytes(4).toString('hex')}`;
    const res = await call('POST', '/api/users', { body: { nickname, password } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return { id: res.body.id as number, nickname };
  }

  const signIn = (nickname: string, password: string, from?: string, headers = {}) =>
    call('POST', '/api/tokens', { from, headers: { ...basic(nickname, password), ...headers } });
  const me = (nickname: string, password: string, from?: string, headers = {}) =>
    call('GET', '/api/users/me', { from, headers: { ...basic(nickname, password), ...headers } });

  async function tokenFor(nickname: string, password: string): Promise<string> {
    const res = await signIn(nickname, password, newSource());
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.token as string;
  }

  const statuses = (answers: Answer[]) => answers.map((a) => a.status);
  const count = (answers: Answer[], status: number) =>
    answers.filter((a) => a.status === status).length;

  it('allows three instances no more wrong passwords per nickname than one: exactly the free ones', async () => {
    for (const [route, guess] of [
      ['POST /api/tokens', signIn],
      ['GET /api/users/me', me],
    ] as const) {
      const { nickname } = await signUp();
      const from = newSource();
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) => guess(nickname, `wrong${i}`, from)),
      );
      assert.deepEqual(
        [count(answers, 401), count(answers, 429)],
        [FREE_PER_NICKNAME, 30 - FREE_PER_NICKNAME],
        `${route}: ${statuses(answers).join(',')}`,
      );
      if (route === 'GET /api/users/me') {
        // The guesses really were spread over the three instances, each answering some.
        const answeredBy = new Set(answers.map((a) => a.headers['x-microflack-instance']));
        assert.equal(answeredBy.size, 3, [...answeredBy].join(' '));
      }
      for (const a of answers.filter((x) => x.status === 429)) {
        assert.match(String(a.body.error), /too many/);
        // Turned away while others are checked: told to wait as if they had failed.
        const wait = Number(a.headers['retry-after']);
        assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= MAX_DELAY_MS / 1000, `${wait}`);
      }
      // The right password is refused too from the guessing address while it waits...
      const refused = await guess(nickname, 'right', from);
      assert.equal(refused.status, 429, route);
      const wait = Number(refused.headers['retry-after']);
      assert.ok(wait >= 1 && wait <= MAX_DELAY_MS / 1000, `Retry-After ${wait}`);
      // ...but never from an address that has not been failing: a stranger cannot lock the
      // real user out.
      const real = await guess(nickname, 'right', newSource());
      assert.equal(real.status, 200, `${route}: ${JSON.stringify(real.body)}`);
    }
  });

  it('counts the address HAProxy saw: spoofed X-Forwarded-For, Forwarded or X-Real-IP buy no guesses', async () => {
    for (const [route, guess] of [
      ['POST /api/tokens', signIn],
      ['GET /api/users/me', me],
    ] as const) {
      const from = newSource();
      const answers: Answer[] = [];
      // Unknown nicknames (each failing once, far below its own limit), each claiming another address.
      for (let i = 0; i < FREE_PER_ADDRESS + 4; i++) {
        const spoofed = `9.9.${i}.${i + 1}`;
        const res = await guess(`ghost${randomBytes(4).toString('hex')}`, 'guess', from, {
          'X-Forwarded-For': i % 2 ? spoofed : `${spoofed}, 10.0.0.${i}`,
          Forwarded: `for=${spoofed}`,
          'X-Real-IP': spoofed,
        });
        answers.push(res);
      }
      assert.deepEqual(
        statuses(answers),
        [...Array(FREE_PER_ADDRESS).fill(401), ...Array(4).fill(429)],
        route,
      );
      // Another client, at another address, is not slowed: the count was this client's own (and
      // through POST /api/tokens not the tokens service's, which vouched for the client's address).
      const other = await guess(`ghost${randomBytes(4).toString('hex')}`, 'guess', newSource());
      assert.equal(other.status, 401, route);
    }
  });

  it('a password change revokes every older token everywhere within 1 s, and answers a fresh token', async () => {
    const { id, nickname } = await signUp('old password');
    const current = await tokenFor(nickname, 'old password');
    const other = await tokenFor(nickname, 'old password');
    // A nickname change alone revokes nothing.
    const renamed = `${nickname}r`;
    const rename = await call('PUT', `/api/users/${id}`, {
      headers: bearer(current),
      body: { nickname: renamed },
    });
    assert.equal(rename.status, 204);

    const changed = await call('PUT', `/api/users/${id}`, {
      headers: bearer(current),
      body: { password: 'new password' },
    });
    const changedAt = Date.now();
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    assert.deepEqual(Object.keys(changed.body), ['token']);
    assert.equal(changed.headers['cache-control'], 'no-store');
    const fresh = changed.body.token as string;

    // Every service, and each of the three users instances (round robin: three calls in a row).
    const checks: Array<[string, string, string, number]> = [
      ['GET', '/api/tokens', 'tokens', 200],
      ['PUT', '/api/users/me', 'users', 204],
      ['GET', '/api/messages', 'messages', 200],
    ];
    const refusedEverywhere = async (token: string) => {
      for (const [method, path] of checks) {
        for (let i = 0; i < 3; i++) {
          if ((await call(method, path, { headers: bearer(token) })).status !== 401) return false;
        }
      }
      return true;
    };
    for (const token of [current, other]) {
      await waitFor('the old token to be refused everywhere', () => refusedEverywhere(token), 1000);
    }
    assert.ok(Date.now() - changedAt <= 1000 + 500, 'within about 1 s');
    for (const [method, path, service, status] of checks) {
      for (let i = 0; i < 3; i++) {
        const res = await call(method, path, { headers: bearer(fresh) });
        assert.equal(res.status, status, `${service} takes the fresh token`);
      }
    }
    assert.equal((await signIn(renamed, 'old password', newSource())).status, 401);
    assert.equal((await signIn(renamed, 'new password', newSource())).status, 200);
  });

  it('after "sign out everywhere", signing in again at once gives a token that works', async () => {
    const { nickname } = await signUp();
    for (let round = 0; round < 2; round++) {
      const old = await tokenFor(nickname, 'right');
      assert.equal(
        (await call('DELETE', '/api/tokens?all=1', { headers: bearer(old) })).status,
        204,
      );
      const fresh = await tokenFor(nickname, 'right');
      for (const wait of [0, 1100]) {
        await sleep(wait);
        assert.equal((await call('GET', '/api/tokens', { headers: bearer(fresh) })).status, 200);
        for (let i = 0; i < 3; i++) {
          const res = await call('PUT', '/api/users/me', { headers: bearer(fresh) });
          assert.equal(res.status, 204, `round ${round}, after ${wait} ms`);
        }
        assert.equal((await call('GET', '/api/tokens', { headers: bearer(old) })).status, 401);
      }
    }
  });

  // Last: it stops the platform's Redis.
  it('with Redis stopped, each instance throttles on its own, and nothing answers 5xx', async () => {
    const { nickname } = await signUp();
    await platform.redis.stop();
    const from = newSource();
    const answers: Answer[] = [];
    for (let i = 0; i < 3 * (FREE_PER_NICKNAME + 3); i++) {
      answers.push(await me(nickname, `wrong${i}`, from));
    }
    assert.ok(
      answers.every((a) => a.status === 401 || a.status === 429),
      statuses(answers).join(','),
    );
    // Per instance: exactly the free failures, then slowed (counted in its own memory).
    const byInstance = new Map<string, number[]>();
    for (const a of answers) {
      const name = String(a.headers['x-microflack-instance']);
      byInstance.set(name, [...(byInstance.get(name) ?? []), a.status]);
    }
    assert.equal(byInstance.size, 3, [...byInstance.keys()].join(' '));
    for (const [name, seen] of byInstance) {
      assert.ok(seen.length > FREE_PER_NICKNAME, `${name} answered ${seen.length}`);
      assert.deepEqual(
        seen,
        [
          ...Array(FREE_PER_NICKNAME).fill(401),
          ...Array(seen.length - FREE_PER_NICKNAME).fill(429),
        ],
        name,
      );
    }
    // Sign-in keeps working for everyone else, through the tokens service too.
    const other = await signUp();
    const ok = await signIn(other.nickname, 'right', newSource());
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const wrong = await signIn(other.nickname, 'wrong', newSource());
    assert.equal(wrong.status, 401);
  });
});
