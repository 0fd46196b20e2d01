// Backends for load-balancer tests: tiny HTTP servers (in-process and as processes), and plain GETs
// through the LB.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd } from '@microflack/common';
import { upstreamKey } from '@microflack/common';
import { Proc, tempDir, WaitAbort, waitFor } from './processes.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface Backend {
  name: string;
  address: string;
  hits: number;
  server: http.Server;
  close(): Promise<void>;
}

/** An HTTP server answering {"instance": name} on every path, 200 on /healthz. */
export async function startBackend(name: string): Promise<Backend> {
  const backend: Backend = {
    name,
    address: '',
    hits: 0,
    server: http.createServer(),
    close: async () => {},
  };
  backend.server.on('request', (req, res) => {
    if (req.url === '/healthz') {
      res.end('ok');
      return;
    }
    backend.hits++;
    res.setHeader('content-type', 'application/json');
    // The client-address headers as they arrived, every line of each.
    const forwarded = Object.fromEntries(
      ['x-forwarded-for', 'forwarded', 'x-real-ip'].map((h) => [h, req.headersDistinct[h] ?? []]),
    );
    res.end(JSON.stringify({ instance: name, path: req.url, forwarded }));
  });
  // Longer than HAProxy's idle timeout, so HAProxy is the one closing idle connections.
  backend.server.keepAliveTimeout = 65000;
  await new Promise<void>((r) => backend.server.listen(0, '127.0.0.1', r));
  backend.address = `127.0.0.1:${(backend.server.address() as AddressInfo).port}`;
  backend.close = () =>
    new Promise<void>((r) => {
      backend.server.closeAllConnections();
      backend.server.close(() => r());
    });
  return backend;
}

/** Writes the upstream key on a lease of its own; returns the lease to revoke. */
export async function putUpstream(etcd: Etcd, service: string, instance: string, value: string) {
  const lease = etcd.lease(10);
  await lease.put(upstreamKey(service, instance)).value(value);
  return lease;
}

export interface BackendProcess {
  proc: Proc;
  instance: string;
  address: string;
  /** When it wrote its upstream key (its own clock, the same host's). */
  registeredAt: number;
}

export interface SpawnOptions {
  /** INSTANCE_NAME; by default the one runService makes up (read from its log). */
  instance?: string;
  /** The URL prefix it registers (default /fixture). */
  location?: string;
  /** More environment, e.g. SHUTDOWN_GRACE_MS (default 2000). */
  env?: NodeJS.ProcessEnv;
}

/**
 * A runService instance in its own process (so it can be killed with -9): it registers `service`
 * in etcd, answers {"instance", "path"} on every path, and GET /slow?ms=N after N ms.
 */
export async function spawnBackend(
  etcd: string,
  service: string,
  opts: SpawnOptions = {},
): Promise<BackendProcess> {
  const label = opts.instance ?? service;
  const proc = new Proc(
    label,
    process.execPath,
    [path.join(here, 'fixtures/backend.js')],
    tempDir('backend'),
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      ETCD: etcd,
      SERVICE_NAME: service,
      ...(opts.instance ? { INSTANCE_NAME: opts.instance } : {}),
      ...(opts.location ? { LOCATION: opts.location } : {}),
      SHUTDOWN_GRACE_MS: '2000',
      ...opts.env,
    },
  );
  let address = '';
  let instance = '';
  let registeredAt = 0;
  await waitFor(
    `${label} to register`,
    () => {
      if (!proc.running) throw new WaitAbort(`${label} exited:\n${proc.log()}`);
      for (const line of proc.log().split('\n')) {
        if (line.includes('"listening"')) address = JSON.parse(line).address;
        if (line.includes('"registered"')) {
          const registered = JSON.parse(line) as { instance: string; time: string };
          instance = registered.instance;
          registeredAt = Date.parse(registered.time);
        }
      }
      return address !== '' && registeredAt > 0;
    },
    30000,
    10,
  );
  return { proc, instance, address, registeredAt };
}

/**
 * GET through the LB on a new connection (so each answer reflects the config in force now, not
 * that of an old worker still finishing an idle keep-alive connection); body parsed when JSON.
 */
export function get(url: string, headers: Record<string, string | string[]> = {}) {
  return new Promise<{
    status: number;
    text: string;
    body: {
      instance?: string;
      path?: string;
      error?: string;
      forwarded?: Record<string, string[]>;
    };
    headers: http.IncomingHttpHeaders;
  }>((resolve, reject) => {
    const req = http.get(url, { agent: false, headers, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body = {};
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: the text is there
        }
        resolve({ status: res.statusCode ?? 0, text, body, headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Waits until GET url answers from `instance`. */
export function waitRouted(url: string, instance: string, timeoutMs = 10000): Promise<void> {
  return waitFor(
    `${url} routed to ${instance}`,
    async () => (await get(url)).body.instance === instance,
    timeoutMs,
    20,
  );
}
