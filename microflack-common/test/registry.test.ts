import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createEtcd, type Etcd } from '../src/etcd.js';
import {
  LEASE_TTL_SECONDS,
  register,
  RegistrationError,
  upstreamKey,
  type Registration,
} from '../src/registry.js';
import { leaseOfKey, revokeLease, sharedBackends, waitFor } from '@microflack/testkit';
import { spawnBackend } from '@microflack/testkit/http-backends';

// A service process (runService) that drains for 100 ms on SIGTERM.
const FAST_DRAIN = { env: { SHUTDOWN_GRACE_MS: '100' } };

describe('registry', () => {
  let etcdUrl: string;
  let etcd: Etcd;
  before(async () => {
    etcdUrl = (await sharedBackends()).etcd;
    etcd = createEtcd([etcdUrl]);
  });
  after(() => etcd.close());

  it('writes location, backend options and the upstream key, and removes the upstream on deregister', async () => {
    const svc = `reg-${Date.now()}`;
    const reg = register(etcd, {
      service: svc,
      instance: 'i1',
      address: '127.0.0.1:1234',
      location: '/api/x',
      backend: { balance: 'source' },
    });
    await reg.ready;
    assert.equal(await etcd.get(`/services/${svc}/location`).string(), '/api/x');
    assert.equal(await etcd.get(`/services/${svc}/backend/balance`).string(), 'source');
    assert.equal(await etcd.get(upstreamKey(svc, 'i1')).string(), '127.0.0.1:1234');
    await reg.deregister();
    assert.equal(await etcd.get(upstreamKey(svc, 'i1')).string(), null);
    assert.equal(await etcd.get(`/services/${svc}/location`).string(), '/api/x');
  });

  it('refuses at once, writing nothing, a registration the load balancer would leave out', async () => {
    const svc = `refused-${Date.now()}`;
    const bad: Registration[] = [
      { service: svc, instance: '.hidden', address: '127.0.0.1:1' },
      { service: 'Upper', instance: 'i1', address: '127.0.0.1:1' },
      { service: svc, instance: 'i1', address: ':::5000' },
      { service: svc, instance: 'i1', address: '127.0.0.1:1', location: 'api/x' },
      { service: svc, instance: 'i1', address: '127.0.0.1:1', backend: { balance: 'hash' } },
      { service: svc, instance: 'i1', address: '127.0.0.1:1', backend: { maxconn: '10' } },
      { service: svc, instance: 'i1', address: '127.0.0.1:1', weight: 257 },
    ];
    for (const reg of bad) {
      assert.throws(() => register(etcd, reg), RegistrationError, JSON.stringify(reg));
    }
    assert.deepEqual(await etcd.getAll().prefix(`/services/${svc}/`).keys(), []);
  });

  it('puts its keys back within 2 s when they are deleted while it lives, and not after deregistering', async () => {
    const svc = `redel-${Date.now()}`;
    const reg = register(etcd, {
      service: svc,
      instance: 'i1',
      address: '127.0.0.1:2',
      location: '/api/redel',
    });
    await reg.ready;
    const key = upstreamKey(svc, 'i1');
    for (let round = 0; round < 3; round++) {
      const t0 = Date.now();
      // As an operator would: the whole service at once, location included.
      await etcd.delete().prefix(`/services/${svc}/`);
      await waitFor(
        'the keys back',
        async () =>
          (await etcd.get(key).string()) === '127.0.0.1:2' &&
          (await etcd.get(`/services/${svc}/location`).string()) === '/api/redel',
        5000,
        20,
      );
      const ms = Date.now() - t0;
      assert.ok(ms < 2000, `back after ${ms} ms`);
    }
    // The key still belongs to its lease: it goes when the instance goes.
    const held = await leaseOfKey(etcdUrl, key);
    assert.ok(held && held !== '0', `on lease ${held}`);
    await reg.deregister();
    assert.equal(await etcd.get(key).string(), null);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await etcd.get(key).string(), null, 'a deregistered instance stays away');
  });

  it('registers again when the lease is revoked behind its back', async () => {
    const svc = `relost-${Date.now()}`;
    const reg = register(etcd, { service: svc, instance: 'i1', address: '127.0.0.1:1' });
    await reg.ready;
    const key = upstreamKey(svc, 'i1');
    const lease = await leaseOfKey(etcdUrl, key);
    assert.ok(lease && lease !== '0');
    await revokeLease(etcdUrl, lease);
    assert.equal(await etcd.get(key).string(), null);
    await waitFor(
      're-registration',
      async () => (await etcd.get(key).string()) === '127.0.0.1:1',
      15000,
    );
    await reg.deregister();
  });

  it('an instance process: upstream appears, and disappears on SIGTERM', async () => {
    const fx = await spawnBackend(etcdUrl, `term-${Date.now()}`, FAST_DRAIN);
    const key = (await etcd.getAll().prefix('/services/').keys()).find((k) =>
      k.endsWith(`/upstream/${fx.instance}`),
    );
    assert.ok(key, 'upstream key registered');
    assert.equal(await etcd.get(key).string(), fx.address);
    fx.proc.signal('SIGTERM');
    await waitFor('upstream removed', async () => (await etcd.get(key).string()) === null, 5000);
    await waitFor('process exit', () => !fx.proc.running, 10000);
  });

  it('an instance process killed with -9: upstream disappears once the lease expires', async () => {
    const fx = await spawnBackend(etcdUrl, `kill-${Date.now()}`, FAST_DRAIN);
    const key = (await etcd.getAll().prefix('/services/').keys()).find((k) =>
      k.endsWith(`/upstream/${fx.instance}`),
    );
    assert.ok(key);
    const killedAt = Date.now();
    fx.proc.signal('SIGKILL');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await etcd.get(key).string(), fx.address, 'still there right after the kill');
    await waitFor(
      'lease expiry',
      async () => (await etcd.get(key).string()) === null,
      (LEASE_TTL_SECONDS + 5) * 1000,
      200,
    );
    const gone = Date.now() - killedAt;
    assert.ok(gone <= (LEASE_TTL_SECONDS + 5) * 1000, `gone after ${gone} ms`);
  });
});
