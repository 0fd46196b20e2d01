import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import {
  backoffPolicy,
  exponentialBackoff,
  RETRY_POLICIES,
  retryDelays,
  retryPolicy,
  withTimeout,
} from '../src/retry.js';

describe('the retry policy', () => {
  it('draws the nth delay from [d/2, d), d doubling from the initial delay up to the cap', () => {
    const policy = backoffPolicy('test', 100, 1000);
    for (let run = 0; run < 50; run++) {
      const delays = retryDelays(policy);
      const bounds = [100, 200, 400, 800, 1000, 1000, 1000];
      for (const d of bounds) {
        const ms = delays.next();
        assert.ok(ms >= d / 2 && ms < d, `${ms} in [${d / 2}, ${d})`);
      }
      delays.reset();
      const first = delays.next();
      assert.ok(first >= 50 && first < 100, `after reset: ${first}`);
    }
  });

  it('keeps each use within the bounds it had before', () => {
    const bounds = Object.fromEntries(
      Object.values(RETRY_POLICIES).map((p) => [p.name, [p.initialDelayMs, p.maxDelayMs]]),
    );
    assert.deepEqual(bounds, {
      'lb call': [100, 1000],
      registration: [500, 5000],
      'revocation start': [100, 2000],
      'redis reconnect': [100, 2000],
      'live settings': [250, 5000],
      'etcd watch': [200, 2000],
      'haproxy restart': [500, 10000],
    });
    for (const policy of Object.values(RETRY_POLICIES)) {
      let backoff = exponentialBackoff(policy).next(undefined);
      for (let i = 0; i < 20; i++) {
        assert.ok(backoff.duration < policy.maxDelayMs, `${policy.name}: ${backoff.duration}`);
        backoff = backoff.next(undefined);
      }
    }
  });

  it('refuses bounds that make no schedule', () => {
    assert.throws(() => backoffPolicy('zero', 0, 100), RangeError);
    assert.throws(() => backoffPolicy('inverted', 200, 100), RangeError);
  });

  it('retries a failing call maxAttempts times, waiting between tries', async () => {
    let tries = 0;
    const started = Date.now();
    const result = await retryPolicy(backoffPolicy('quick', 10, 20), { maxAttempts: 3 }).execute(
      () => {
        tries++;
        if (tries < 4) throw new Error(`try ${tries}`);
        return 'ok';
      },
    );
    assert.equal(result, 'ok');
    assert.equal(tries, 4);
    // Three waits of at least 5, 10 and 10 ms (timers may fire a millisecond early).
    assert.ok(Date.now() - started >= 22);
    tries = 0;
    await assert.rejects(
      retryPolicy(backoffPolicy('quick', 10, 20), { maxAttempts: 2 }).execute(() => {
        tries++;
        throw new Error('always');
      }),
      /always/,
    );
    assert.equal(tries, 3);
  });
});

describe('withTimeout', () => {
  /** Keeps this process's one thread busy, as a burst of requests or a long GC does. */
  const busyFor = (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until);
  };

  it('takes an answer that came while this process was busy past the timeout', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const [peer] = await accepted;
    try {
      const answer = once(client, 'data').then(([data]) => String(data));
      // The answer is in the kernel, waiting to be read, before the timer has even run out.
      peer.write('pong');
      const result = withTimeout(answer, 20);
      busyFor(150);
      assert.equal(await result, 'pong');
    } finally {
      client.destroy();
      peer.destroy();
      server.close();
    }
  });

  // withTimeout's timer never holds the process: a test holds it while it waits.
  const holdingTheProcess = async (fn: () => Promise<void>) => {
    const hold = setInterval(() => undefined, 1000);
    try {
      await fn();
    } finally {
      clearInterval(hold);
    }
  };

  it('still times out a dependency that does not answer, and says after how long', async () => {
    await holdingTheProcess(async () => {
      const started = performance.now();
      await assert.rejects(withTimeout(new Promise(() => undefined), 30), /timed out after 30 ms/);
      assert.ok(performance.now() - started >= 29);
    });
  });

  it('times out a dependency that did not answer during the busy time either', async () => {
    await holdingTheProcess(async () => {
      const result = withTimeout(new Promise(() => undefined), 20);
      busyFor(60);
      await assert.rejects(result, /timed out after 20 ms/);
    });
  });
});
