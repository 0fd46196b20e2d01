// Ceilings measured in the same run: a trivial server behind the same HAProxy, raw bcrypt on all cores.
import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { createEtcd, register, serviceKeysPrefix } from '@microflack/common';

export interface TrivialServer {
  path: string;
  stop(): Promise<void>;
}

/** Registers a server answering a fixed JSON body of `bytes` bytes at `/bench-ceiling-<bytes>`. */
export async function startTrivialServer(
  etcdUrl: string,
  bytes: number,
  lb: string,
  opts: { notModified?: boolean } = {},
): Promise<TrivialServer> {
  const prefix = '{"pad":"';
  const body = Buffer.from(prefix + 'x'.repeat(Math.max(0, bytes - prefix.length - 2)) + '"}');
  let draining = false;
  const server = http.createServer((req, res) => {
    // Health as an instance reports it: 503 once it is leaving, so the LB drops it at once.
    if (req.url === '/healthz') return void res.writeHead(draining ? 503 : 200).end();
    // The conditional GET's ceiling: 304 with the ETag and no body.
    if (opts.notModified) return void res.writeHead(304, { etag: '"ceiling"' }).end();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 65000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const etcd = createEtcd([etcdUrl]);
  const name = opts.notModified ? 'bench-ceiling-304' : `bench-ceiling-${bytes}`;
  const path = `/${name}`;
  const reg = register(etcd, {
    service: name,
    instance: `i${port}`,
    address: `127.0.0.1:${port}`,
    location: path,
  });
  await reg.ready;
  await waitRouted(lb + path);
  return {
    path,
    async stop() {
      // Leaves as a service would, and takes its service's keys along (it is the bench's own), so
      // that the LB drops the whole backend.
      draining = true;
      await reg.deregister();
      await etcd.delete().prefix(serviceKeysPrefix(name));
      etcd.close();
      // Until HAProxy has reloaded without this backend, a new connection may still be accepted
      // by the worker that is stopping, which answers 307 (see the LB template): the next
      // measurement must start on the new worker.
      await waitUnrouted(lb + path);
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Until the LB answers `url` with its own 404: the backend is gone from the running config. */
async function waitUnrouted(url: string, timeoutMs = 30000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const status = await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
      async (res) => (await res.arrayBuffer(), res.status),
      () => 0,
    );
    if (status === 404) return;
    if (performance.now() > deadline) throw new Error(`${url} still routed after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function waitRouted(url: string, timeoutMs = 30000): Promise<number> {
  const start = performance.now();
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok || res.status === 304) return performance.now() - start;
    } catch {
      // not routed yet
    }
    if (performance.now() - start > timeoutMs)
      throw new Error(`${url} not routed after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Raw bcrypt hashes per second at `cost`, one worker thread per core, for `seconds`. */
export async function bcryptCeiling(
  cost: number,
  seconds: number,
): Promise<{ hashesPerSecond: number; cores: number }> {
  const cores = os.availableParallelism();
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const bcrypt = require(workerData.bcrypt);
    const end = Date.now() + workerData.ms;
    let n = 0;
    while (Date.now() < end) { bcrypt.hashSync('benchmark-password', workerData.cost); n++; }
    parentPort.postMessage(n);`;
  const bcryptPath = import.meta.resolve('bcrypt').replace(/^file:\/\//, '');
  const started = performance.now();
  const counts = await Promise.all(
    Array.from(
      { length: cores },
      () =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(source, {
            eval: true,
            workerData: { cost, ms: seconds * 1000, bcrypt: bcryptPath },
          });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  const elapsed = (performance.now() - started) / 1000;
  return {
    hashesPerSecond: Math.round((counts.reduce((a, b) => a + b, 0) / elapsed) * 10) / 10,
    cores,
  };
}
