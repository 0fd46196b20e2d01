// Faults: the configurator killed and restarted, HAProxy killed, a config HAProxy refuses.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { startEtcd, tempDir, waitFor, type EtcdServer } from '@microflack/testkit';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { get, startBackend, waitRouted, type Backend } from '@microflack/testkit/http-backends';
import { LoadGenerator } from '@microflack/testkit/load';

const TEMPLATE = path.join(path.dirname(fileURLToPath(import.meta.url)), '../haproxy.cfg.tmpl');

describe('load balancer faults', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  let template: string;
  const backends: Backend[] = [];
  const regs: Array<{ deregister(): Promise<void> }> = [];

  async function instance(service: string, name: string) {
    const b = await startBackend(name);
    backends.push(b);
    const reg = register(etcd, {
      service,
      instance: name,
      address: b.address,
      location: `/api/${service}`,
    });
    regs.push(reg);
    await reg.ready;
    await waitRouted(`${lb.url}/api/${service}`, name);
  }

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    // An operator-editable copy of the template.
    template = path.join(tempDir('lb-template'), 'haproxy.cfg.tmpl');
    fs.copyFileSync(TEMPLATE, template);
    lb = await startTestLoadBalancer({
      etcd: etcdServer.url,
      env: { LB_TEMPLATE: template, LB_RESYNC_INTERVAL_MS: '1000' },
    });
    await instance('faults', 'faults-1');
    await instance('faults', 'faults-2');
  });
  after(async () => {
    for (const r of regs) await r.deregister();
    await lb.stop();
    for (const b of backends) await b.close();
    etcd.close();
    await etcdServer.stop();
  });

  it('a configurator killed with -9 and started again changes nothing for live traffic', async () => {
    const pid = lb.haproxyPid();
    const cfg = lb.config();
    const load = await new LoadGenerator({
      url: lb.url,
      mix: { get: '/api/faults/x' },
      ratePerSecond: 200,
      tries: 1,
      timeoutMs: 10000,
    }).start();
    await new Promise((r) => setTimeout(r, 500));
    const reloads = lb.reloads();
    await lb.restartConfigurator();
    await new Promise((r) => setTimeout(r, 1500));
    const result = await load.stop();
    assert.equal(result.total.rawFailures, 0, JSON.stringify(result.samples.slice(0, 5)));
    assert.equal(lb.haproxyPid(), pid, 'the same HAProxy kept running');
    assert.equal(lb.config(), cfg, 'the same config');
    assert.equal(lb.reloads(), reloads, 'no reload needed');
    assert.match(lb.proc.log(), /adopted running haproxy/);
    // And it still follows etcd.
    await instance('after', 'after-restart');
  });

  it('HAProxy killed with -9 is restarted with the current config', async () => {
    const pid = lb.haproxyPid()!;
    process.kill(pid, 'SIGKILL');
    await waitFor('a new haproxy', () => (lb.haproxyPid() ?? pid) !== pid, 10000);
    await waitRouted(`${lb.url}/api/faults`, 'faults-1');
    await waitRouted(`${lb.url}/api/after`, 'after-restart');
    assert.match(lb.proc.log(), /haproxy exited|haproxy is not running/);
  });

  it('keeps the last good config and says why when haproxy -c refuses the new one, and recovers', async () => {
    const good = fs.readFileSync(template, 'utf8');
    fs.writeFileSync(
      template,
      good.replace('    balance {{balance}}', '    balance {{balance}}\n    no-such-directive on'),
    );
    const reloads = lb.reloads();
    await etcd.put('/services/refused/location').value('/api/refused');
    await waitFor(
      'the refusal logged',
      () => /haproxy -c rejected the new config/.test(lb.proc.log()),
      10000,
    );
    assert.equal(lb.reloads(), reloads);
    assert.ok(!lb.config().includes('no-such-directive'), 'haproxy.cfg still the last good one');
    assert.equal((await get(`${lb.url}/api/faults`)).status, 200, 'still routing');
    // The operator fixes the template; the next change (or the periodic resync) applies it.
    fs.writeFileSync(template, good);
    await waitFor(
      'the refused change applied',
      async () => (await get(`${lb.url}/api/refused`)).status === 503,
      15000,
    );
  });
});
