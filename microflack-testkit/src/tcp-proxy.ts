// A TCP proxy on 127.0.0.1 in front of a local port, for network faults without namespaces: cut
// every connection and refuse new ones, or freeze the open ones while new ones go through.
import assert from 'node:assert/strict';
import net from 'node:net';
import { freePort } from './processes.js';

export interface TcpProxy {
  port: number;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Destroys every open connection and refuses new ones until restore(). */
  cut(): void;
  restore(): void;
  /**
   * The open connections stop carrying bytes (as after a network cut, until TCP retransmits) and
   * stay open; new connections go through.
   */
  freeze(): void;
  /** The frozen connections carry bytes again, what was held first (no-op unless frozen). */
  thaw(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  // Each open connection: the client's side and the upstream side.
  const pairs = new Set<[net.Socket, net.Socket]>();
  const sockets = () => [...pairs].flat();
  let cut = false;
  let frozen = false;
  const server = net.createServer((client) => {
    if (cut) return client.destroy();
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    for (const s of pair) {
      s.on('error', () => undefined);
      s.on('close', () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    cut() {
      cut = true;
      for (const s of sockets()) s.destroy();
    },
    restore() {
      cut = false;
    },
    freeze() {
      frozen = true;
      for (const s of sockets()) {
        s.unpipe();
        s.pause();
      }
    },
    thaw() {
      // Once: piped twice, every byte would go twice.
      if (!frozen) return;
      frozen = false;
      for (const [client, upstream] of pairs) client.pipe(upstream).pipe(client);
    },
    close() {
      for (const s of sockets()) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * `send()` made with `proxy` frozen is not answered while it stays frozen: not within `holdMs`
 * after `ready()` (what must have happened before the answer could be held; at once by default).
 * Thaws the proxy and gives the answer. For "answered only after its write went through".
 */
export async function answeredAfterThaw(
  proxy: TcpProxy,
  what: string,
  send: () => Promise<Response>,
  {
    ready = async () => undefined,
    holdMs = 300,
  }: { ready?: () => Promise<unknown>; holdMs?: number } = {},
): Promise<Response> {
  proxy.freeze();
  let answered = false;
  const res = send().then((r) => {
    answered = true;
    return r;
  });
  await ready();
  await new Promise((r) => setTimeout(r, holdMs));
  assert.equal(answered, false, `${what} answered while held`);
  proxy.thaw();
  return res;
}
