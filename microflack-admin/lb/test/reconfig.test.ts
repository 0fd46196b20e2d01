// Continuous load while instances come and go 20 times (SIGTERM drain and kill -9): no request may fail.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { startEtcd, waitFor, type EtcdServer } from '@microflack/testkit';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { LoadGenerator, percentile } from '@microflack/testkit/load';
import {
  spawnBackend,
  startBackend,
  waitRouted,
  type Backend,
  type BackendProcess,
} from '@microflack/testkit/http-backends';

const RATE = 220;
const CYCLES = 20;

describe('load balancer under reconfiguration', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  const stable: Backend[] = [];
  const stableRegs: Array<{ deregister(): Promise<void> }> = [];
  const spawned: BackendProcess[] = [];

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    lb = await startTestLoadBalancer({ etcd: etcdServer.url });
    for (const name of ['stable-1', 'stable-2']) {
      const b = await startBackend(name);
      stable.push(b);
      const reg = register(etcd, {
        service: 'load',
        instance: name,
        address: b.address,
        location: '/api/load',
      });
      stableRegs.push(reg);
      await reg.ready;
      await waitRouted(`${lb.url}/api/load`, name);
    }
  });
  after(async () => {
    for (const p of spawned) p.proc.signal('SIGKILL');
    for (const r of stableRegs) await r.deregister();
    await lb.stop();
    for (const b of stable) await b.close();
    etcd.close();
    await etcdServer.stop();
  });

  it(`loses no request at ${RATE} req/s while instances are added and removed ${CYCLES} times`, async () => {
    const reloadsBefore = lb.reloads();
    const load = await new LoadGenerator({
      url: lb.url,
      mix: { get: '/api/load/item' },
      ratePerSecond: RATE,
      tries: 1,
      timeoutMs: 10000,
    }).start();
    const toRouted: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const p = await spawnBackend(etcdServer.url, 'load', {
        instance: `dyn-${i}`,
        location: '/api/load',
      });
      spawned.push(p);
      await waitFor(`dyn-${i} routed`, () => load.firstSeen.has(p.instance), 15000, 5);
      toRouted.push(load.firstSeen.get(p.instance)! - p.registeredAt);
      await new Promise((r) => setTimeout(r, 300));
      // Alternate: a clean stop (deregister, drain) and a crash (lease expiry + health checks).
      p.proc.signal(i % 2 === 0 ? 'SIGTERM' : 'SIGKILL');
    }
    // Killed instances are still registered until their lease runs out: keep the load on meanwhile.
    await new Promise((r) => setTimeout(r, 3000));
    const result = await load.stop();
    const rate = result.total.sent / result.seconds;
    const reloads = lb.reloads() - reloadsBefore;
    console.log(
      `reconfiguration under load: ${result.total.sent} requests in ${result.seconds.toFixed(1)} s ` +
        `(${rate.toFixed(0)} req/s), failed ${result.total.rawFailures}; ` +
        `registration -> first routed request: p50 ${percentile(toRouted, 50)} ms, max ${Math.max(...toRouted)} ms ` +
        `(all: ${toRouted.join(' ')}); reloads ${reloads}`,
    );
    assert.deepEqual(result.samples.slice(0, 10), [], 'no failed request');
    assert.equal(result.total.rawFailures, 0);
    assert.ok(rate >= 200, `at least 200 req/s (${rate.toFixed(0)})`);
    assert.equal(toRouted.length, CYCLES);
    assert.ok(reloads >= CYCLES, 'each registration reloaded HAProxy');
    for (let i = 0; i < CYCLES; i++)
      assert.ok((load.seen.get(`dyn-${i}`) ?? 0) > 0, `dyn-${i} got traffic`);
    await waitFor('SIGTERMed instances exit', () => spawned.every((p) => !p.proc.running), 15000);
  });
});
