// Routing through the real load balancer: alternation, location and default backends, longest prefix, weight, stats.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { basic, startEtcd, waitFor, type EtcdServer } from '@microflack/testkit';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { get, startBackend, waitRouted, type Backend } from '@microflack/testkit/http-backends';

describe('load balancer routing', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  const backends: Backend[] = [];
  const registrations: Array<{ deregister(): Promise<void> }> = [];

  async function instance(service: string, name: string, location?: string, weight?: number) {
    const b = await startBackend(name);
    backends.push(b);
    const reg = register(etcd, { service, instance: name, address: b.address, location, weight });
    registrations.push(reg);
    await reg.ready;
    return b;
  }

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    lb = await startTestLoadBalancer({ etcd: etcdServer.url, statsPassword: 'stats-pass-123' });
  });
  after(async () => {
    for (const r of registrations) await r.deregister();
    await lb.stop();
    for (const b of backends) await b.close();
    etcd.close();
    await etcdServer.stop();
  });

  it('alternates requests between the two instances of a service', async () => {
    await instance('alt', 'alt-a', '/api/alt');
    await instance('alt', 'alt-b', '/api/alt');
    await waitRouted(`${lb.url}/api/alt/x`, 'alt-a');
    await waitRouted(`${lb.url}/api/alt/x`, 'alt-b');
    const order: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await get(`${lb.url}/api/alt/items/${i}`);
      assert.equal(res.status, 200);
      assert.equal(res.body.path, `/api/alt/items/${i}`, 'the path reaches the service unchanged');
      order.push(res.body.instance!);
    }
    for (let i = 1; i < order.length; i++)
      assert.notEqual(order[i], order[i - 1], `alternates: ${order.join(' ')}`);
    assert.deepEqual(new Set(order), new Set(['alt-a', 'alt-b']));
  });

  it('routes by location, the longest prefix first, / as the default, /<service> without location', async () => {
    await instance('root', 'root-1', '/');
    await instance('api', 'api-1', '/api');
    await instance('apiusers', 'apiusers-1', '/api/users');
    await instance('noloc', 'noloc-1');
    await waitRouted(`${lb.url}/noloc`, 'noloc-1');
    await waitRouted(`${lb.url}/api/users`, 'apiusers-1');
    const cases: Array<[string, string]> = [
      ['/', 'root-1'],
      ['/index.html', 'root-1'],
      ['/apixyz', 'root-1'],
      ['/api', 'api-1'],
      ['/api/messages/1', 'api-1'],
      ['/api/usersx', 'api-1'],
      ['/api/users', 'apiusers-1'],
      ['/api/users/7?x=1', 'apiusers-1'],
      ['/noloc/a/b', 'noloc-1'],
      ['/api/alt/1', 'alt-a'],
    ];
    for (const [path, expected] of cases) {
      const res = await get(`${lb.url}${path}`);
      if (expected === 'alt-a') assert.match(res.body.instance ?? '', /^alt-/, path);
      else assert.equal(res.body.instance, expected, path);
    }
  });

  it('honours weight N in upstream values', async () => {
    await instance('weighted', 'w-light', '/api/weighted', 1);
    await instance('weighted', 'w-heavy', '/api/weighted', 9);
    await waitRouted(`${lb.url}/api/weighted`, 'w-light');
    await waitRouted(`${lb.url}/api/weighted`, 'w-heavy');
    const counts = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      const { body } = await get(`${lb.url}/api/weighted`);
      counts.set(body.instance!, (counts.get(body.instance!) ?? 0) + 1);
    }
    console.log(`weight 1:9 -> ${JSON.stringify(Object.fromEntries(counts))}`);
    assert.ok((counts.get('w-heavy') ?? 0) >= 80, 'the heavy instance gets about 90%');
    assert.ok((counts.get('w-light') ?? 0) >= 5, 'the light one still gets some');
  });

  it('routes to an instance that comes back under the same name on another port', async () => {
    const first = await instance('reborn', 'reborn-1', '/api/reborn');
    await waitRouted(`${lb.url}/api/reborn`, 'reborn-1');
    // Killed: its key stays until the lease ends; HAProxy marks it DOWN and saves that state.
    await first.close();
    await waitFor(
      'marked down',
      async () => (await get(`${lb.url}/api/reborn`)).status === 503,
      10000,
    );
    const again = await startBackend('reborn-1-again');
    backends.push(again);
    await etcd.put('/services/reborn/upstream/reborn-1').value(again.address);
    await waitRouted(`${lb.url}/api/reborn`, 'reborn-1-again');
  });

  it('answers 503 JSON from the LB for a service with no instance, with its backend options applied', async () => {
    await etcd.put('/services/empty/location').value('/api/empty');
    await etcd.put('/services/empty/backend/balance').value('leastconn');
    await waitFor(
      'svc_empty configured',
      () => /backend svc_empty\n\s+balance leastconn/.test(lb.config()),
      5000,
    );
    // The file is swapped in just before the reload; and an idle keep-alive connection gets one
    // last answer from the old worker (hitless reload), so wait for the new routing.
    let status = 0;
    await waitFor(
      'svc_empty routed',
      async () => (status = (await get(`${lb.url}/api/empty/x`)).status) === 503,
      5000,
    );
    assert.equal(status, 503);
    // The LB's own answer, in the API's error shape, never another service's.
    const res = await get(`${lb.url}/api/empty/x`);
    assert.deepEqual(res.body, { error: 'service unavailable' });
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.equal(res.headers['retry-after'], '1');
    assert.equal(res.headers['x-microflack-instance'], 'lb');
    assert.equal(
      (await get(`${lb.url}/api/x`)).body.instance,
      'api-1',
      'the other routes are untouched',
    );
  });

  it('drops client-supplied X-Forwarded-For, Forwarded and X-Real-IP; sets only its own address', async () => {
    await waitRouted(`${lb.url}/api/x`, 'api-1');
    const cases: Array<Record<string, string | string[]>> = [
      {},
      { 'X-Forwarded-For': '9.9.9.9' },
      { 'X-Forwarded-For': ['9.9.9.9, 8.8.8.8', '7.7.7.7'] },
      { Forwarded: 'for=9.9.9.9', 'X-Real-IP': '9.9.9.9' },
      { 'x-forwarded-for': '127.0.0.2', forwarded: 'for="[::1]"', 'x-real-ip': '10.0.0.1' },
    ];
    for (const headers of cases) {
      const res = await get(`${lb.url}/api/x`, headers);
      assert.equal(res.status, 200);
      assert.deepEqual(
        res.body.forwarded,
        { 'x-forwarded-for': ['127.0.0.1'], forwarded: [], 'x-real-ip': [] },
        JSON.stringify(headers),
      );
    }
  });

  it('keeps /healthz and /metrics off the public frontend; the LB metrics behind the stats password', async () => {
    // The default backend (root-1, registered above) answers every path: these must not reach it.
    assert.equal((await get(`${lb.url}/anything`)).body.instance, 'root-1');
    for (const p of ['/healthz', '/metrics', '/healthz/', '/metrics/x']) {
      const res = await get(`${lb.url}${p}`);
      assert.equal(res.status, 404, p);
      assert.deepEqual(res.body, { error: 'not found' }, p);
      assert.equal(res.headers['x-microflack-instance'], 'lb', p);
    }
    // Other paths that merely start alike still reach their service.
    assert.equal((await get(`${lb.url}/metricsx`)).body.instance, 'root-1');
    assert.equal((await get(`${lb.url}/stats/metrics`)).status, 401);
    const metrics = await get(`${lb.url}/stats/metrics`, basic('admin', 'stats-pass-123'));
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^# HELP haproxy_/m);
    assert.match(metrics.text, /^haproxy_backend_current_sessions\{proxy="svc_alt"\} \d+$/m);
  });

  // Issue 12: an old worker (kept alive after a reload by a client's idle keep-alive connection)
  // answered that connection's next request with its old config: another service's answer.
  it('never answers from an old config on a connection opened before a reload', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ask = (url: string, a: http.Agent | false) =>
      new Promise<{ status: number; location?: string; instance?: string }>((resolve, reject) => {
        http
          .get(url, { agent: a, timeout: 5000 }, (res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('end', () => {
              let instance: string | undefined;
              try {
                instance = (JSON.parse(text) as { instance?: string }).instance;
              } catch {
                // not JSON
              }
              resolve({ status: res.statusCode ?? 0, location: res.headers.location, instance });
            });
          })
          .on('error', reject);
      });
    try {
      // Before the service exists, the default backend answers its path, on a kept connection.
      assert.equal((await ask(`${lb.url}/late/x`, agent)).instance, 'root-1');
      await instance('late', 'late-1', '/late');
      await waitRouted(`${lb.url}/late/x`, 'late-1');
      // The kept connection belongs to the worker of the old config: it must not route with it.
      const again = await ask(`${lb.url}/late/x`, agent);
      const final =
        again.status === 307 ? await ask(new URL(again.location!, lb.url).href, false) : again;
      assert.notEqual(again.instance, 'root-1', 'answered from the old config');
      assert.equal(final.instance, 'late-1');
    } finally {
      agent.destroy();
    }
  });

  it('/stats answers 401 without the password and 200 with it', async () => {
    assert.equal((await get(`${lb.url}/stats`)).status, 401);
    assert.equal((await get(`${lb.url}/stats`, basic('admin', 'nope'))).status, 401);
    const ok = await get(`${lb.url}/stats`, basic('admin', 'stats-pass-123'));
    assert.equal(ok.status, 200);
    assert.match(ok.text, /svc_alt/);
    const csv = await get(`${lb.url}/stats;csv`, basic('admin', 'stats-pass-123'));
    assert.equal(csv.status, 200);
    assert.match(csv.text, /^# pxname,svname/);
  });
});
