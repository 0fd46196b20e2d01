// An instance of an HTTP service is given at most LB_SERVER_MAXCONN requests at once; the rest wait
// in HAProxy's queue, and its health checks, which do not queue, still reach it. Socket.IO
// gateways, whose connections last, are not limited.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { startEtcd, type EtcdServer } from '@microflack/testkit';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { get, waitRouted } from '@microflack/testkit/http-backends';

const MAXCONN = 4;
const HOLD_MS = 300;

/** An instance that holds every request HOLD_MS and counts how many it has at once. */
interface Slow {
  name: string;
  address: string;
  server: http.Server;
  now: number;
  most: number;
  /** Health checks that reached it while it held requests. */
  checks: number;
}

async function startSlow(name: string): Promise<Slow> {
  const slow: Slow = {
    name,
    address: '',
    server: http.createServer(),
    now: 0,
    most: 0,
    checks: 0,
  };
  slow.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.url === '/healthz') {
      if (slow.now > 0) slow.checks++;
      res.end('ok');
      return;
    }
    slow.now++;
    slow.most = Math.max(slow.most, slow.now);
    setTimeout(() => {
      slow.now--;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ instance: name }));
    }, HOLD_MS);
  });
  await new Promise<void>((r) => slow.server.listen(0, '127.0.0.1', r));
  slow.address = `127.0.0.1:${(slow.server.address() as AddressInfo).port}`;
  return slow;
}

/** The status of a GET through the LB, each on a connection of its own. */
const statusOf = async (url: string) => (await get(url)).status;

describe('load balancer queue (LB_SERVER_MAXCONN)', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  let api: Slow;
  let gateway: Slow;
  const registrations: Array<{ deregister(): Promise<void> }> = [];

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    lb = await startTestLoadBalancer({
      etcd: etcdServer.url,
      env: { LB_SERVER_MAXCONN: String(MAXCONN) },
    });
    api = await startSlow('msgs-1');
    gateway = await startSlow('sio-1');
    for (const [b, service, location] of [
      [api, 'messages', '/api/messages'],
      [gateway, 'socketio', '/socket.io'],
    ] as const) {
      const reg = register(etcd, { service, instance: b.name, address: b.address, location });
      registrations.push(reg);
      await reg.ready;
    }
    await waitRouted(`${lb.url}/api/messages`, 'msgs-1');
    await waitRouted(`${lb.url}/socket.io/`, 'sio-1');
  });
  after(async () => {
    for (const r of registrations) await r.deregister();
    await lb.stop();
    for (const b of [api, gateway]) {
      b?.server.closeAllConnections();
      b?.server.close();
    }
    etcd.close();
    await etcdServer.stop();
  });

  it('gives an instance at most LB_SERVER_MAXCONN requests; the others wait and are answered', async () => {
    api.most = 0;
    api.checks = 0;
    const count = 6 * MAXCONN;
    const started = performance.now();
    const statuses = await Promise.all(
      Array.from({ length: count }, () => statusOf(`${lb.url}/api/messages`)),
    );
    const elapsed = performance.now() - started;
    assert.deepEqual(statuses, Array(count).fill(200), 'every queued request answered');
    assert.equal(api.most, MAXCONN, `the instance held ${api.most} requests at once`);
    // Six rounds of MAXCONN, each held HOLD_MS: the queue, not the instance, held the rest.
    assert.ok(elapsed >= 5 * HOLD_MS, `all answered in ${Math.round(elapsed)} ms`);
    // Checks run every second (250 ms after an error) and skip the queue: at least one reached
    // the instance while it held its requests (1.8 s).
    assert.ok(api.checks >= 1, 'no health check reached the busy instance');
  });

  it('does not limit a Socket.IO gateway (its connections last)', async () => {
    gateway.most = 0;
    const count = 6 * MAXCONN;
    const statuses = await Promise.all(
      Array.from({ length: count }, () => statusOf(`${lb.url}/socket.io/`)),
    );
    assert.deepEqual(statuses, Array(count).fill(200));
    assert.equal(gateway.most, count, `the gateway held ${gateway.most} requests at once`);
  });
});
