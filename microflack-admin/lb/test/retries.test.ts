// What HAProxy sends again to another instance when one dies under a request: safe methods and a
// new message with an Idempotency-Key, never another POST (the instance may have done its work).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { startEtcd, type EtcdServer } from '@microflack/testkit';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { startBackend, waitRouted, type Backend } from '@microflack/testkit/http-backends';

interface Answer {
  status: number;
  instance: string;
}

function send(url: string, method: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent: false,
        timeout: 10000,
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          const body = JSON.parse(text) as { instance?: string };
          resolve({ status: res.statusCode ?? 0, instance: body.instance ?? '' });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : '{"source":"hello"}');
  });
}

describe('load balancer retries', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  let healthy: Backend;
  let dying: Backend;
  /** Requests the dying instance took (and closed without an answer), by method. */
  const died: Record<string, number> = {};
  const registrations: Array<{ deregister(): Promise<void> }> = [];

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    lb = await startTestLoadBalancer({ etcd: etcdServer.url });
    healthy = await startBackend('msgs-healthy');
    dying = await startBackend('msgs-dying');
    // Passes its health checks, but every other request ends with the connection closed after the
    // whole request arrived, with no answer: an instance killed while it works.
    dying.server.removeAllListeners('request');
    dying.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.url === '/healthz') {
        res.end('ok');
        return;
      }
      req.resume();
      req.on('end', () => {
        died[req.method ?? ''] = (died[req.method ?? ''] ?? 0) + 1;
        req.socket.destroy();
      });
    });
    for (const b of [healthy, dying]) {
      const reg = register(etcd, {
        service: 'messages',
        instance: b.name,
        address: b.address,
        location: '/api/messages',
      });
      registrations.push(reg);
      await reg.ready;
    }
    await waitRouted(`${lb.url}/api/messages`, 'msgs-healthy');
  });
  after(async () => {
    for (const r of registrations) await r.deregister();
    await lb.stop();
    for (const b of [healthy, dying]) await b?.close();
    etcd.close();
    await etcdServer.stop();
  });

  it('sends a GET and a keyed POST /api/messages again to another instance', async () => {
    const before = { ...died };
    for (let i = 0; i < 6; i++) {
      const get = await send(`${lb.url}/api/messages?limit=1`, 'GET');
      assert.deepEqual(get, { status: 200, instance: 'msgs-healthy' });
      const post = await send(`${lb.url}/api/messages`, 'POST', { 'idempotency-key': `k-${i}` });
      assert.deepEqual(post, { status: 200, instance: 'msgs-healthy' });
    }
    // Round robin sent some of them to the dying instance first: those were tried again.
    assert.ok((died.GET ?? 0) > (before.GET ?? 0), 'no GET met the dying instance');
    assert.ok((died.POST ?? 0) > (before.POST ?? 0), 'no keyed POST met the dying instance');
  });

  it('never sends a POST without a key, or to another path, again: 502', async () => {
    const cases: Array<[string, string, Record<string, string>]> = [
      ['POST', '/api/messages', {}],
      ['POST', '/api/messages/search', { 'idempotency-key': 'k-other-path' }],
      ['PUT', '/api/messages/1', { 'idempotency-key': 'k-put' }],
    ];
    for (const [method, path, headers] of cases) {
      const before = died[method] ?? 0;
      const answers: Answer[] = [];
      // Enough tries that round robin gives the dying instance some.
      for (let i = 0; i < 6; i++) answers.push(await send(`${lb.url}${path}`, method, headers));
      const hitDying = (died[method] ?? 0) - before;
      assert.ok(hitDying > 0, `${method} ${path} never met the dying instance`);
      assert.equal(
        answers.filter((a) => a.status === 502).length,
        hitDying,
        `${method} ${path}: each request the dying instance took is a 502, not sent again`,
      );
      for (const a of answers.filter((x) => x.status !== 502)) {
        assert.deepEqual(a, { status: 200, instance: 'msgs-healthy' });
      }
    }
  });
});
