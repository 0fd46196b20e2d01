// Live paths: revocation everywhere, registration to first routed request, event fan-out to sockets.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { io, type Socket } from 'socket.io-client';
import { createEtcd, EVENTS, register, serviceKeysPrefix } from '@microflack/common';
import { waitRouted } from './ceilings.js';
import type { Api } from './seed.js';

export interface Spread {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
}

export function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    p50Ms: r(at(0.5)),
    p99Ms: r(at(0.99)),
    maxMs: r(sorted[sorted.length - 1] ?? 0),
    samples: values.length,
  };
}

/** From DELETE /api/tokens answered to a 401 from users, messages and tokens alike. */
export async function measureRevocation(
  api: Api,
  nickname: string,
  password: string,
  rounds: number,
): Promise<Spread> {
  const delays: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const token = await api.token(nickname, password);
    const auth = { Authorization: `Bearer ${token}` };
    const t0 = performance.now();
    const del = await api.fetch('/api/tokens', { method: 'DELETE', headers: auth });
    if (del.status !== 204) throw new Error(`DELETE /api/tokens answered ${del.status}`);
    await Promise.all(
      ['/api/users', '/api/messages?limit=1', '/api/tokens'].map(async (path) => {
        for (;;) {
          const res = await api.fetch(path, { headers: auth });
          if (res.status === 401) return;
          if (performance.now() - t0 > 10000)
            throw new Error(`${path} still accepts a revoked token`);
        }
      }),
    );
    delays.push(performance.now() - t0);
  }
  return spread(delays);
}

/** From a new instance's registration in etcd to the first request HAProxy routes to it. */
export async function measureRegistration(
  lb: string,
  etcdUrl: string,
  rounds: number,
): Promise<Spread> {
  const etcd = createEtcd([etcdUrl]);
  const delays: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const server = http.createServer((_req, res) => res.end('ok'));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as AddressInfo).port;
      const name = `bench-reg-${process.pid}-${i}`;
      const t0 = performance.now();
      const reg = register(etcd, {
        service: name,
        instance: 'i1',
        address: `127.0.0.1:${port}`,
        location: `/${name}`,
      });
      await waitRouted(`${lb}/${name}`);
      delays.push(performance.now() - t0);
      await reg.deregister();
      server.close();
      // The service keeps its permanent keys; remove them so the LB config does not grow.
      await etcd.delete().prefix(serviceKeysPrefix(name));
    }
  } finally {
    etcd.close();
  }
  return spread(delays);
}

/** post_message from one client to updated_model received by all `clients`, over `posts` posts. */
export async function measureFanout(
  lb: string,
  token: string,
  clients: number,
  posts: number,
): Promise<Spread & { clients: number }> {
  const sockets: Socket[] = [];
  try {
    for (let i = 0; i < clients; i += 50) {
      const batch = Array.from({ length: Math.min(50, clients - i) }, () => {
        const s = io(lb, { transports: ['websocket'], reconnection: false, timeout: 10000 });
        sockets.push(s);
        return new Promise<void>((resolve, reject) => {
          s.once('connect', () => resolve());
          s.once('connect_error', reject);
        });
      });
      await Promise.all(batch);
    }
    const sender = sockets[0] as Socket;
    const delays: number[] = [];
    for (let p = 0; p < posts; p++) {
      const source = `fanout ${Date.now()} ${p}`;
      let pending = sockets.length;
      const t0 = performance.now();
      const allReceived = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${pending} of ${sockets.length} clients missed the event`)),
          10000,
        );
        for (const s of sockets) {
          const onEvent = (data: { class?: string; model?: { source?: string } }) => {
            if (data?.class !== 'Message' || data.model?.source !== source) return;
            s.off(EVENTS.updatedModel, onEvent);
            if (--pending === 0) {
              clearTimeout(timer);
              resolve();
            }
          };
          s.on(EVENTS.updatedModel, onEvent);
        }
      });
      sender.emit(EVENTS.postMessage, { source }, token);
      await allReceived;
      delays.push(performance.now() - t0);
    }
    return { ...spread(delays), clients };
  } finally {
    for (const s of sockets) s.close();
  }
}
