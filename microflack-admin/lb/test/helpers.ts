// Test helpers for the load balancer: tiny backends (in-process and as processes) and a load generator.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { upstreamKey } from '@microflack/common';
import { Proc, tempDir, WaitAbort, waitFor } from '@microflack/common/testing';

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
export async function putUpstream(etcd: Etcd3, service: string, instance: string, value: string) {
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

/** A runService instance in its own process (so it can be killed with -9). */
export async function spawnBackend(
  etcd: string,
  service: string,
  instance: string,
  location: string,
): Promise<BackendProcess> {
  const proc = new Proc(
    instance,
    process.execPath,
    ['--import', import.meta.resolve('tsx'), path.join(here, 'fixtures/backend.ts')],
    tempDir('lb-backend'),
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      ETCD: etcd,
      SERVICE_NAME: service,
      INSTANCE_NAME: instance,
      LOCATION: location,
      SHUTDOWN_GRACE_MS: '2000',
    },
  );
  let address = '';
  let registeredAt = 0;
  await waitFor(
    `${instance} to register`,
    () => {
      if (!proc.running) throw new WaitAbort(`${instance} exited:\n${proc.log()}`);
      for (const line of proc.log().split('\n')) {
        if (line.includes('"listening"')) address = JSON.parse(line).address;
        if (line.includes('"registered"')) registeredAt = Date.parse(JSON.parse(line).time);
      }
      return address !== '' && registeredAt > 0;
    },
    30000,
    10,
  );
  return { proc, instance, address, registeredAt };
}

export interface Failure {
  at: number;
  error: string;
}

/** Steady GET traffic through one keep-alive agent, like a busy client; counts every outcome. */
export class Load {
  ok = 0;
  failures: Failure[] = [];
  readonly firstSeen = new Map<string, number>();
  readonly seen = new Map<string, number>();
  private sent = 0;
  private started = 0;
  private stoppedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  constructor(
    private readonly url: string,
    private readonly ratePerSecond: number,
  ) {}

  start(): this {
    this.started = Date.now();
    this.timer = setInterval(() => {
      const due = Math.floor(((Date.now() - this.started) * this.ratePerSecond) / 1000);
      while (this.sent < due) {
        this.sent++;
        this.one();
      }
    }, 5);
    return this;
  }

  private one(): void {
    this.inFlight++;
    const at = Date.now();
    const fail = (error: string) => {
      this.failures.push({ at, error });
    };
    const req = http.get(this.url, { agent: this.agent, timeout: 10000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        this.inFlight--;
        if (res.statusCode !== 200) return fail(`status ${res.statusCode}: ${body.slice(0, 100)}`);
        this.ok++;
        const instance = (JSON.parse(body) as { instance: string }).instance;
        if (!this.firstSeen.has(instance)) this.firstSeen.set(instance, Date.now());
        this.seen.set(instance, (this.seen.get(instance) ?? 0) + 1);
      });
      res.on('error', (err) => {
        this.inFlight--;
        fail(err.message);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => {
      this.inFlight--;
      fail(`${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`);
    });
  }

  /** Stops sending, waits for the answers still due. */
  async stop(): Promise<{
    total: number;
    ok: number;
    failed: number;
    seconds: number;
    rate: number;
  }> {
    clearInterval(this.timer);
    this.stoppedAt = Date.now();
    await waitFor('requests in flight', () => this.inFlight <= 0, 15000);
    this.agent.destroy();
    const seconds = (this.stoppedAt - this.started) / 1000;
    return {
      total: this.sent,
      ok: this.ok,
      failed: this.failures.length,
      seconds,
      rate: this.sent / seconds,
    };
  }
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

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
