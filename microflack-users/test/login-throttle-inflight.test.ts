// The throttle counts attempts still being checked, so parallel guesses cannot outrun it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLoginThrottle } from '../src/login-throttle.js';

describe('createLoginThrottle with attempts in flight', () => {
  it('lets only the free attempts start at once, and frees them when they end', () => {
    let t = 0;
    const th = createLoginThrottle(
      { freeFailuresPerNickname: 2, freeFailuresPerAddress: 100, baseDelayMs: 1000 },
      () => t,
    );
    assert.equal(th.acquire('ada', 'ip'), 0);
    assert.equal(th.acquire('ada', 'ip2'), 0);
    assert.equal(th.acquire('ada', 'ip3'), 1000, 'a third waits while two are being checked');
    assert.equal(th.acquire('bob', 'ip'), 0, 'other nicknames are not held up');
    // Both checks end without a failure (a database error, say): nothing stays held.
    th.release('ada', 'ip');
    th.release('ada', 'ip2');
    assert.equal(th.waitMs('ada', 'ip3'), 0);
    // Two that fail: then the usual wait applies, from the last failure.
    for (const ip of ['ip', 'ip2']) {
      assert.equal(th.acquire('ada', ip), 0);
      th.release('ada', ip);
      th.failed('ada', ip);
    }
    assert.equal(th.acquire('ada', 'ip3'), 1000);
    t += 1000;
    assert.equal(th.acquire('ada', 'ip3'), 0);
    assert.equal(th.acquire('ada', 'ip4'), 2000, 'one at a time once over the free count');
  });

  it('holds the address count too, once the address has failed', () => {
    const th = createLoginThrottle(
      { freeFailuresPerNickname: 100, freeFailuresPerAddress: 2, baseDelayMs: 1000 },
      () => 0,
    );
    th.failed('x', 'ip');
    assert.equal(th.acquire('a', 'ip'), 0);
    assert.ok(th.acquire('b', 'ip') > 0, 'the attempt in flight counts as the second failure');
    assert.equal(th.acquire('b', 'other'), 0);
  });

  it('does not hold an address without failures by its honest sign-ins in flight', () => {
    const th = createLoginThrottle(
      { freeFailuresPerNickname: 5, freeFailuresPerAddress: 2, baseDelayMs: 1000 },
      () => 0,
    );
    for (let i = 0; i < 50; i++) assert.equal(th.acquire(`user${i}`, 'nat'), 0);
  });
});
