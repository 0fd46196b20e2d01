import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, DEV_JWT_SECRET_KEY, parseConfig } from '../src/config.js';
import { rowCacheConfig } from '../src/json-cache.js';

describe('parseConfig', () => {
  it('fills defaults from the original in development', () => {
    const config = parseConfig({}, {});
    assert.equal(config.JWT_SECRET_KEY, DEV_JWT_SECRET_KEY);
    assert.deepEqual(config.ETCD, ['http://127.0.0.1:2379']);
    assert.equal(config.LB_ALGORITHM, 'roundrobin');
    assert.match(config.INSTANCE_NAME, /-\d+-[0-9a-f]{4}$/);
  });

  it('splits ETCD into several URLs', () => {
    const config = parseConfig({}, { ETCD: 'http://a:1, http://b:2' });
    assert.deepEqual(config.ETCD, ['http://a:1', 'http://b:2']);
  });

  it('takes REDIS as host:port or as Sentinels with the name of their primary, nothing else', () => {
    assert.equal(parseConfig({}, { REDIS: 'redis:6379' }).REDIS, 'redis:6379');
    const sentinels = 'sentinel://redis-0.redis-peers:26379,redis-1.redis-peers:26379/microflack';
    assert.equal(parseConfig({}, { REDIS: sentinels }).REDIS, sentinels);
    for (const bad of [
      'sentinel://a:1/',
      'sentinel:///mf',
      'sentinel://a/mf',
      'sentinel://a:1,/mf',
      'sentinel:mf@a:1',
      'a:1,b:2',
    ])
      assert.throws(() => parseConfig({}, { REDIS: bad }), /REDIS/, bad);
  });

  it('names every invalid variable in one message', () => {
    assert.throws(
      () => parseConfig({}, { REDIS: 'no-port', LOG_LEVEL: 'loud', PORT: 'x', LB: 'ftp://x' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        for (const name of ['REDIS', 'LOG_LEVEL', 'PORT', 'LB'])
          assert.match(err.message, new RegExp(name));
        assert.equal(err.problems.length, 4);
        return true;
      },
    );
  });

  it('refuses to start in production with the default JWT_SECRET_KEY', () => {
    assert.throws(() => parseConfig({}, { NODE_ENV: 'production' }), /JWT_SECRET_KEY/);
    assert.throws(
      () => parseConfig({}, { NODE_ENV: 'production', JWT_SECRET_KEY: DEV_JWT_SECRET_KEY }),
      /JWT_SECRET_KEY/,
    );
    assert.throws(
      () => parseConfig({}, { NODE_ENV: 'production', JWT_SECRET_KEY: 'short' }),
      /JWT_SECRET_KEY/,
    );
    const ok = parseConfig({}, { NODE_ENV: 'production', JWT_SECRET_KEY: 'x'.repeat(40) });
    assert.equal(ok.NODE_ENV, 'production');
  });

  it('validates a service-specific variable and names it', async () => {
    const { z } = await import('zod');
    const extra = { PREVIEW_TIMEOUT_MS: z.coerce.number().int().positive() };
    assert.equal(parseConfig(extra, { PREVIEW_TIMEOUT_MS: '300' }).PREVIEW_TIMEOUT_MS, 300);
    assert.throws(() => parseConfig(extra, {}), /PREVIEW_TIMEOUT_MS/);
  });

  it("bounds the row cache by a setting in bytes, with the service's default", () => {
    const extra = rowCacheConfig(4096);
    assert.equal(parseConfig(extra, {}).ROW_CACHE_BYTES, 4096);
    assert.equal(parseConfig(extra, { ROW_CACHE_BYTES: '1048576' }).ROW_CACHE_BYTES, 1048576);
    for (const bad of ['0', '-1', '1.5', 'lots', String(2 ** 31 + 1)])
      assert.throws(() => parseConfig(extra, { ROW_CACHE_BYTES: bad }), /ROW_CACHE_BYTES/, bad);
  });
});
