// /socket.io through the load balancer: sticky sessions for long-polling, and WebSocket upgrades.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Server } from 'socket.io';
import { io, type Socket } from 'socket.io-client';
import { createEtcd, register, type Etcd } from '@microflack/common';
import { startEtcd, waitFor, type EtcdServer } from '@microflack/testkit';
import { startTestLoadBalancer, type TestLoadBalancer } from '@microflack/testkit/load-balancer';
import { get } from '@microflack/testkit/http-backends';

interface SioInstance {
  name: string;
  http: http.Server;
  io: Server;
}

async function startSioInstance(name: string): Promise<SioInstance> {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') res.end('ok');
  });
  const sio = new Server(server);
  sio.on('connection', (socket) => {
    socket.on('whoami', (ack: (name: string) => void) => ack(name));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { name, http: server, io: sio };
}

function whoami(socket: Socket): Promise<string> {
  return socket.timeout(5000).emitWithAck('whoami');
}

describe('load balancer /socket.io', () => {
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let lb: TestLoadBalancer;
  const instances: SioInstance[] = [];
  const regs: Array<{ deregister(): Promise<void> }> = [];
  const sockets: Socket[] = [];

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    lb = await startTestLoadBalancer({ etcd: etcdServer.url });
    for (const name of ['sio-a', 'sio-b']) {
      const inst = await startSioInstance(name);
      instances.push(inst);
      const address = `127.0.0.1:${(inst.http.address() as AddressInfo).port}`;
      const reg = register(etcd, {
        service: 'socketio',
        instance: name,
        address,
        location: '/socket.io',
      });
      regs.push(reg);
      await reg.ready;
    }
    await waitFor(
      'both socket.io instances configured',
      () => (lb.config().match(/ cookie [0-9a-f]{12}/g) ?? []).length === 2,
      10000,
    );
    await waitFor(
      'socket.io routed',
      async () => (await get(`${lb.url}/socket.io/?EIO=4&transport=polling`)).status === 200,
      10000,
    );
  });
  after(async () => {
    for (const s of sockets) s.close();
    for (const r of regs) await r.deregister();
    await lb.stop();
    for (const i of instances) {
      i.io.close();
      i.http.closeAllConnections();
    }
    etcd.close();
    await etcdServer.stop();
  });

  function connect(transports: Array<'polling' | 'websocket'>): Promise<Socket> {
    // withCredentials: the Node client keeps the LB's sticky cookie, as a browser does.
    const socket = io(lb.url, {
      transports,
      withCredentials: true,
      reconnection: false,
      forceNew: true,
    });
    sockets.push(socket);
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  }

  it('keeps a long-polling client on one instance, and spreads clients over both', async () => {
    const seen = new Set<string>();
    for (let c = 0; c < 4; c++) {
      const socket = await connect(['polling']);
      const names = [];
      for (let i = 0; i < 5; i++) names.push(await whoami(socket));
      assert.equal(new Set(names).size, 1, `one instance per client: ${names.join(' ')}`);
      assert.equal(socket.io.engine.transport.name, 'polling');
      seen.add(names[0]!);
    }
    assert.deepEqual([...seen].sort(), ['sio-a', 'sio-b']);
  });

  it('upgrades to WebSocket through the LB and stays on the instance that held the session', async () => {
    const socket = await connect(['polling', 'websocket']);
    const first = await whoami(socket);
    await waitFor(
      'upgrade to websocket',
      () => socket.io.engine.transport.name === 'websocket',
      10000,
    );
    for (let i = 0; i < 5; i++) assert.equal(await whoami(socket), first);
    assert.ok(socket.connected);
  });

  it('accepts a direct WebSocket connection and keeps it open across a reload', async () => {
    const socket = await connect(['websocket']);
    const first = await whoami(socket);
    const reloads = lb.reloads();
    await etcd.put('/services/other/location').value('/api/other');
    await waitFor('reload', () => lb.reloads() > reloads, 10000);
    assert.equal(await whoami(socket), first, 'the tunnel survived the reload on the old worker');
    assert.ok(socket.connected);
  });
});
