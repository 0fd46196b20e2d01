// etcd stopped under load: HAProxy keeps routing with the last config, and the configurator resyncs after.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { startEtcd, type EtcdServer } from '@microflack/testkit';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { LoadGenerator } from '@microflack/testkit/load';
import { startBackend, waitRouted, type Backend } from '@microflack/testkit/http-backends';

describe('load balancer during an etcd outage', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  const backends: Backend[] = [];
  const regs: Array<{ deregister(): Promise<void> }> = [];

  async function instance(name: string, location: string) {
    const b = await startBackend(name);
    backends.push(b);
    const reg = register(etcd, {
      service: name.split('-')[0]!,
      instance: name,
      address: b.address,
      location,
    });
    regs.push(reg);
    await reg.ready;
  }

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    lb = await startTestLoadBalancer({ etcd: etcdServer.url });
    await instance('steady-1', '/api/steady');
    await instance('steady-2', '/api/steady');
    await waitRouted(`${lb.url}/api/steady`, 'steady-1');
    await waitRouted(`${lb.url}/api/steady`, 'steady-2');
  });
  after(async () => {
    for (const r of regs) await r.deregister();
    await lb.stop();
    for (const b of backends) await b.close();
    etcd.close();
    await etcdServer.stop();
  });

  it('loses no request while etcd is down for 10 s, and applies a change made after it returns', async () => {
    const load = await new LoadGenerator({
      url: lb.url,
      mix: { get: '/api/steady/x' },
      ratePerSecond: 200,
      tries: 1,
      timeoutMs: 10000,
    }).start();
    await new Promise((r) => setTimeout(r, 1000));
    await etcdServer.stop();
    await new Promise((r) => setTimeout(r, 10000));
    const reloadsDuringOutage = lb.reloads();
    await etcdServer.start();
    await instance('late-1', '/api/late');
    const returned = Date.now();
    await waitRouted(`${lb.url}/api/late`, 'late-1', 15000);
    console.log(`etcd outage: change after etcd returned routed in ${Date.now() - returned} ms`);
    await new Promise((r) => setTimeout(r, 1000));
    const result = await load.stop();
    console.log(
      `etcd outage: ${result.total.sent} requests, failed ${result.total.rawFailures}, ` +
        `${(result.total.sent / result.seconds).toFixed(0)} req/s`,
    );
    assert.deepEqual(result.samples.slice(0, 10), []);
    assert.equal(result.total.rawFailures, 0);
    assert.ok(
      (load.seen.get('steady-1') ?? 0) > 0 && (load.seen.get('steady-2') ?? 0) > 0,
      'both instances kept serving',
    );
    assert.ok(lb.reloads() > reloadsDuringOutage, 'the change was applied with a reload');
    assert.match(lb.proc.log(), /etcd unreachable; routing with the last config|etcd watch lost/);
  });
});
