// Malformed and hostile etcd keys never reach haproxy.cfg and do not break the other services.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { startEtcd, waitFor, type EtcdServer } from '@microflack/testkit';
import { buildModel, parseUpstream } from '../src/services.js';
import { renderTemplate, TemplateError } from '../src/template.js';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { get, startBackend, waitRouted, type Backend } from '@microflack/testkit/http-backends';

const HOSTILE: Array<[string, string]> = [
  ['/services/bad name/upstream/i1', '127.0.0.1:1'],
  ['/services/Upper/upstream/i1', '127.0.0.1:1'],
  ['/services/x#y/location', '/x'],
  ['/services/inject/location', '/inject\n    bind 127.0.0.1:1'],
  ['/services/inject/location2', '/x'],
  ['/services/quote/location', '/a"b'],
  ['/services/spaces/location', '/a b'],
  ['/services/relative/location', 'api/x'],
  ['/services/dots/location', '/api/../x'],
  ['/services/victim/upstream/evil 1', '127.0.0.1:1'],
  ['/services/victim/upstream/evil\n2', '127.0.0.1:1'],
  ['/services/victim/upstream/evil3', '127.0.0.1:1 check inter 1'],
  ['/services/victim/upstream/evil4', '127.0.0.1:1\nfrontend x'],
  ['/services/victim/upstream/evil5', '127.0.0.1:99999'],
  ['/services/victim/upstream/evil6', '127.0.0.1:0'],
  ['/services/victim/upstream/evil7', '127.0.0.1:80 weight 257'],
  ['/services/victim/upstream/evil8', '[::1]:80'],
  ['/services/victim/upstream/evil9', 'http://127.0.0.1:80'],
  ['/services/victim/upstream/evil10', '127.0.0.1:80 # comment'],
  ['/services/victim/upstream/evil11', '999.1.1.1:80'],
  ['/services/victim/backend/balance', 'roundrobin\n    http-request deny'],
  ['/services/victim/backend/http-request', 'deny'],
  ['/services/victim/backend/__proto__', 'x'],
  ['/services/victim/weird/deep/key', 'x'],
];

describe('etcd key validation', () => {
  it('leaves out every hostile key and keeps the good ones', () => {
    const model = buildModel([
      ...HOSTILE.map(([key, value]) => ({ key, value })),
      { key: '/services/victim/location', value: '/api/victim' },
      { key: '/services/victim/upstream/good', value: '127.0.0.1:5000 weight 3' },
      { key: '/services/victim/upstream/host', value: 'app-1.internal:8080' },
    ]);
    assert.equal(model.rejected.length, HOSTILE.length, JSON.stringify(model.rejected, null, 1));
    const victim = model.services.find((s) => s.name === 'victim');
    assert.deepEqual(
      victim?.servers.map((s) => [s.name, s.address, s.weight]),
      [
        ['good', '127.0.0.1:5000', 3],
        ['host', 'app-1.internal:8080', 1],
      ],
    );
    assert.equal(victim?.balance, 'roundrobin');
    assert.equal(victim?.location, '/api/victim');
  });

  it('parses upstream values strictly', () => {
    assert.deepEqual(parseUpstream('10.0.0.1:65535 weight 0'), {
      address: '10.0.0.1:65535',
      weight: 0,
    });
    assert.deepEqual(parseUpstream('localhost:1'), { address: 'localhost:1', weight: 1 });
    for (const bad of [
      '10.0.0.1',
      ':80',
      'a:b',
      '10.0.0.1:80 weight',
      '10.0.0.1:80  weight 1',
      '-a:80',
      '1.2.3:80',
    ]) {
      assert.equal(typeof parseUpstream(bad), 'string', bad);
    }
  });

  it('gives a location to one service only', () => {
    const model = buildModel([
      { key: '/services/b/location', value: '/api/same' },
      { key: '/services/a/location', value: '/api/same' },
    ]);
    assert.deepEqual(
      model.services.map((s) => s.name),
      ['a'],
    );
    assert.match(model.rejected[0]!.reason, /already belongs to a/);
  });

  it('the template renderer refuses a value that is not one token', () => {
    assert.equal(renderTemplate('server {{a}}\n', { a: 'x:1' }), 'server x:1\n');
    for (const bad of ['x y', 'x\ny', 'x#', 'x"', "x'", 'x\\y']) {
      assert.throws(() => renderTemplate('server {{a}}\n', { a: bad }), TemplateError, bad);
    }
    assert.throws(() => renderTemplate('{{#a}}x', { a: true }), TemplateError);
  });
});

describe('load balancer with hostile keys in etcd', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  let backend: Backend;
  let reg: { deregister(): Promise<void> };

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    lb = await startTestLoadBalancer({ etcd: etcdServer.url });
    backend = await startBackend('victim-ok');
    const r = register(etcd, {
      service: 'victim',
      instance: 'victim-ok',
      address: backend.address,
      location: '/api/victim',
    });
    reg = r;
    await r.ready;
    await waitRouted(`${lb.url}/api/victim`, 'victim-ok');
  });
  after(async () => {
    await reg.deregister();
    await lb.stop();
    await backend.close();
    etcd.close();
    await etcdServer.stop();
  });

  // Issue 18, item 6: a body trickled at one byte a second must not hold connections open.
  it('answers 408 to clients trickling their request body, within the request timeout', async () => {
    const { port } = new URL(lb.url);
    const started = Date.now();
    const slow = Array.from(
      { length: 5 },
      () =>
        new Promise<{ status: string; ms: number }>((resolve) => {
          const s = net.connect(Number(port), '127.0.0.1');
          let answer = '';
          const drip = setInterval(() => s.write('x'), 1000);
          s.on('connect', () =>
            s.write(
              'POST /api/victim/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
                'Content-Length: 1024\r\n\r\n{',
            ),
          );
          s.on('data', (d) => (answer += d));
          const done = () => {
            clearInterval(drip);
            resolve({ status: answer.split('\r\n')[0] ?? '', ms: Date.now() - started });
          };
          s.on('close', done);
          s.on('error', done);
          // A bound for the test itself, far beyond what the LB may take.
          setTimeout(() => s.destroy(), 25000).unref();
        }),
    );
    const results = await Promise.all(slow);
    for (const r of results) {
      assert.match(r.status, /^HTTP\/1\.1 408 /, JSON.stringify(r));
      assert.ok(r.ms < 13000, `cut after ${r.ms} ms`);
    }
    // Meanwhile and after, the service answers as usual.
    assert.equal((await get(`${lb.url}/api/victim/1`)).body.instance, 'victim-ok');
  });

  it('keeps routing the good services and writes nothing hostile into haproxy.cfg', async () => {
    const reloads = lb.reloads();
    for (const [key, value] of HOSTILE) await etcd.put(key).value(value);
    // A good change after the hostile ones proves the configurator is still applying changes.
    const other = await startBackend('other-ok');
    const r2 = register(etcd, {
      service: 'other',
      instance: 'other-ok',
      address: other.address,
      location: '/api/other',
    });
    // Released whatever happens, or an open server would keep the test process alive.
    try {
      await r2.ready;
      await waitRouted(`${lb.url}/api/other`, 'other-ok');
      // The configurator logs the reload once HAProxy confirms it, a moment after the new worker
      // already routes.
      await waitFor('the reload logged', () => lb.reloads() > reloads, 5000);
      const cfg = lb.config();
      for (const needle of [
        'bind 127.0.0.1:1\n',
        'evil',
        'http-request deny',
        'frontend x',
        'bad name',
        'inject',
        '#y',
      ]) {
        assert.ok(!cfg.includes(needle), `haproxy.cfg must not contain ${JSON.stringify(needle)}`);
      }
      assert.equal((await get(`${lb.url}/api/victim/1`)).body.instance, 'victim-ok');
      assert.equal((await get(`${lb.url}/nothing-here`)).status, 404);
      assert.match(lb.proc.log(), /etcd key left out of the config/);
    } finally {
      await r2.deregister();
      await other.close();
    }
  });
});
