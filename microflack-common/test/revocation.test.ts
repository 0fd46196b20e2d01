import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createEtcd, type Etcd } from '../src/etcd.js';
import { createRevocationList, REVOKED_TOKENS_PREFIX } from '../src/revocation.js';
import {
  leaseOfKey,
  leaseTtl,
  sharedBackends,
  startEtcd,
  waitFor,
  type EtcdServer,
} from '@microflack/testkit';

describe('revocation list', () => {
  let etcdUrl: string;
  let a: Etcd;
  let b: Etcd;
  before(async () => {
    etcdUrl = (await sharedBackends()).etcd;
    a = createEtcd([etcdUrl]);
    b = createEtcd([etcdUrl]);
  });
  after(() => {
    a.close();
    b.close();
  });

  it('a revocation made by one process is honoured by another within 1 s (measured over 10)', async () => {
    const writer = createRevocationList(a);
    const reader = createRevocationList(b);
    await writer.start();
    await reader.start();
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const jti = `prop-${Date.now()}-${i}`;
      const t0 = performance.now();
      await writer.revokeToken({ jti, exp: Math.floor(Date.now() / 1000) + 60 });
      await waitFor('reader sees revocation', () => reader.isRevoked(jti, 1, 0), 1000, 1);
      delays.push(performance.now() - t0);
    }
    delays.sort((x, y) => x - y);
    console.log(
      `revocation propagation over 10: p50 ${delays[5]?.toFixed(1)} ms, max ${delays[9]?.toFixed(1)} ms`,
    );
    assert.ok((delays[9] as number) < 1000);
    await writer.stop();
    await reader.stop();
  });

  it('loads revocations made before it started', async () => {
    const jti = `before-${Date.now()}`;
    const writer = createRevocationList(a);
    await writer.revokeToken({ jti, exp: Math.floor(Date.now() / 1000) + 60 });
    const late = createRevocationList(b);
    await late.start();
    assert.ok(late.isRevoked(jti, 1, 0));
    await late.stop();
  });

  it('binds the key to a lease as long as the token plus slack', async () => {
    const jti = `lease-${Date.now()}`;
    await createRevocationList(a).revokeToken({ jti, exp: Math.floor(Date.now() / 1000) + 100 });
    const lease = await leaseOfKey(etcdUrl, REVOKED_TOKENS_PREFIX + jti);
    assert.ok(lease && lease !== '0', `on lease ${lease}`);
    const ttl = await leaseTtl(etcdUrl, lease);
    assert.ok(ttl > 95 && ttl <= 105, `TTL ${ttl}`);
  });

  describe('while etcd is unreachable', () => {
    let own: EtcdServer;
    before(async () => {
      own = await startEtcd();
    });
    after(() => own.stop());

    it('keeps the last known set in force and catches up when etcd returns', async () => {
      const c1 = createEtcd([own.url]);
      const c2 = createEtcd([own.url]);
      const writer = createRevocationList(c1);
      const reader = createRevocationList(c2);
      await reader.start();
      await writer.revokeToken({ jti: 'kept', exp: Math.floor(Date.now() / 1000) + 600 });
      await waitFor('seen', () => reader.isRevoked('kept', 1, 0), 1000, 5);
      await own.stop();
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(reader.isRevoked('kept', 1, 0), 'still revoked while etcd is down');
      await own.start();
      await writer.revokeToken({ jti: 'after', exp: Math.floor(Date.now() / 1000) + 600 });
      await waitFor(
        'revocation after the outage',
        () => reader.isRevoked('after', 1, 0),
        10000,
        20,
      );
      await reader.stop();
      c1.close();
      c2.close();
    });
  });
});
