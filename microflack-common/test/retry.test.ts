import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  backoffPolicy,
  exponentialBackoff,
  RETRY_POLICIES,
  retryDelays,
  retryPolicy,
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
