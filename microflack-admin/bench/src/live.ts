// Live paths: revocation everywhere, registration to first routed request, event fan-out to sockets.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import {
  backoffPolicy,
  createEtcd,
  EVENTS,
  register,
  retryPolicy,
  serviceKeysPrefix,
} from '@microflack/common';
import { waitRouted } from './ceilings.js';
import { netCounters, netDelta, type NetCounters } from './netstat.js';
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

export interface Fanout extends Spread {
  clients: number;
  /** post_message to the first client's updated_model (the rest is the spread over clients). */
  first: Spread;
  /** Seconds to connect every client (in batches, through the LB). */
  connectSeconds: number;
  /** Handshakes that failed and were tried again while connecting. */
  connectRetries: number;
  /** CPU milliseconds a post cost, on average: this process (the clients) and each `cpuOf` pid. */
  cpuMsPerPost: Record<string, number>;
  /** The part of `cpuMsPerPost` spent in the kernel (system time: sockets, loopback TCP). */
  kernelMsPerPost: Record<string, number>;
  /** Each post's time to the last client, in order (where an outlier fell). */
  postsMs: number[];
  /** The kernel's retransmits and input-backlog drops during each post, in the same order
   * (a slow post with drops waited on TCP's retransmission timeout); absent where /proc is not. */
  postsNet?: NetCounters[];
}

/** CPU time (user + system) of a process so far, in ms; undefined if it is gone. */
export function cpuMs(pid: number): number | undefined {
  const t = cpuTimes(pid);
  return t && t.user + t.system;
}

/** User and system (kernel) CPU time of a process so far, in ms; undefined if it is gone. */
export function cpuTimes(pid: number): { user: number; system: number } | undefined {
  try {
    // utime and stime, fields 14 and 15, in clock ticks (100 a second on Linux); the name (field 2)
    // may hold spaces, so counted from after its closing parenthesis.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
  } catch {
    return undefined;
  }
}

/** Clients connecting at once: more only piles handshakes up in HAProxy's and the gateway's queues. */
const CONNECT_BATCH = 100;
/** Tries a client gets to connect: with thousands of sockets on 2 shared cores, a rare handshake
 * outlasts its 10 s, or HAProxy answers 503 while its check of the busy gateway is late (two full
 * runs failed so, at client 8,055 and 6,401 of 9,500), and a real client would try again after a
 * pause, as socket.io-client does (about 1 s, doubling); the retries are counted in the result. */
const CONNECT_TRIES = 4;
/** The platform's retry schedule (jittered, doubling) with socket.io-client's first delay, 1 s. */
const CONNECT_BACKOFF = backoffPolicy('fan-out client connect', 1000, 4000);
/** One post reaches every client within this, or the run fails (10,000 events take well under 1 s
 * to send and to read on 2 cores: 10 s means lost events, not a slow machine). */
const POST_TIMEOUT_MS = 10000;

/**
 * A receiving client of the fan-out: a bare WebSocket speaking Engine.IO 4 and Socket.IO 5 itself
 * (open, connect to the main namespace, answer pings, read events). socket.io-client spent about
 * 25 µs of this process's CPU on each event (decoding it into objects, then its emitter) on the
 * same 2 cores as the platform; this one only looks for the post's text in the frame's bytes.
 */
class Listener {
  readonly ws: WebSocket;
  readonly connected: Promise<void>;
  /** Called with each event frame (`42[...]`) after the connection. */
  onEvent: (frame: Buffer) => void = () => undefined;
  /** The close code, once the connection closed (so a missed event says why). */
  closedWith?: number;

  constructor(lb: string, localAddress?: string) {
    const url = new URL('/socket.io/?EIO=4&transport=websocket', lb);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: 10000,
      localAddress,
    });
    this.connected = new Promise<void>((resolve, reject) => {
      const fail = (why: string) => {
        reject(new Error(why));
        this.ws.terminate();
      };
      this.ws.once('error', (err) => fail(`websocket: ${err.message}`));
      this.ws.once('close', (code) => {
        this.closedWith = code;
        fail(`closed (${code}) before connecting`);
      });
      this.ws.on('message', (data: Buffer) => {
        const type = data[0];
        if (type === 0x32 /* '2' ping */ && data.length === 1) this.ws.send('3');
        else if (type === 0x30 /* '0' open */) this.ws.send('40');
        else if (type === 0x34 /* '4' message */) {
          if (data[1] === 0x32 /* '2' event */) this.onEvent(data);
          else if (data[1] === 0x30 /* '0' connected */) resolve();
          else if (data[1] === 0x34 /* '4' connect error */) fail(`refused: ${data.toString()}`);
        }
      });
    });
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Source addresses the clients of a loopback LB spread over (all of 127/8 is this host). */
const LOOPBACK_SOURCES = 64;

/**
 * The address client `i` connects from: spread over 127.0.0.2-65 when the LB is on loopback, as
 * clients from many hosts would be (HAProxy places Socket.IO clients by their source address, so
 * from one address every client would reach the same socketio instance); the default otherwise.
 */
function sourceAddress(lb: string, i: number): string | undefined {
  const host = new URL(lb).hostname;
  if (!/^127\./.test(host) && host !== 'localhost') return undefined;
  return `127.0.0.${2 + (i % LOOPBACK_SOURCES)}`;
}

/**
 * post_message from one client to updated_model received by all `clients`, over `posts` posts.
 * The sender is a socket.io-client through the LB; the receivers are `Listener`s through the LB,
 * or spread over `direct` (the gateways' own addresses, `http://host:port`) when given, all in this
 * one Node process: what is measured includes this process reading all the events, one after the
 * other on its one thread.
 */
export async function measureFanout(
  lb: string,
  token: string,
  clients: number,
  posts: number,
  cpuOf: Map<string, number> = new Map(),
  direct: string[] = [],
): Promise<Fanout> {
  const listeners: Listener[] = [];
  let sender: Socket | undefined;
  try {
    const connectStart = performance.now();
    let lastReport = 0;
    let connectRetries = 0;
    const retries = retryPolicy(CONNECT_BACKOFF, { maxAttempts: CONNECT_TRIES - 1 });
    retries.onRetry(() => connectRetries++);
    /** Client `i`, connected: tried again, as a real client would, if its handshake fails. */
    const connect = async (i: number): Promise<void> => {
      try {
        await retries.execute(() => {
          const l =
            direct.length > 0
              ? new Listener(direct[i % direct.length] as string)
              : new Listener(lb, sourceAddress(lb, i));
          listeners[i] = l;
          return l.connected;
        });
      } catch (err) {
        throw new Error(
          `client ${i + 1} of ${clients} could not connect in ${CONNECT_TRIES} tries: ${(err as Error).message}`,
          { cause: err },
        );
      }
    };
    for (let i = 0; i < clients; i += CONNECT_BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(CONNECT_BATCH, clients - i) }, (_, k) => connect(i + k)),
      );
      if (
        clients >= 1000 &&
        (listeners.length - lastReport >= 1000 || listeners.length === clients)
      ) {
        lastReport = listeners.length;
        console.log(`    ${listeners.length} of ${clients} clients connected`);
      }
    }
    const connectSeconds = Math.round((performance.now() - connectStart) / 100) / 10;
    // The sender connects last, so that it is fresh when the posts start.
    sender = io(lb, { transports: ['websocket'], reconnection: false, timeout: 10000 });
    const senderSocket = sender;
    let senderLost: string | undefined;
    senderSocket.on('disconnect', (reason) => (senderLost = reason));
    await new Promise<void>((resolve, reject) => {
      senderSocket.once('connect', () => resolve());
      senderSocket.once('connect_error', (err) =>
        reject(new Error(`the sender could not connect: ${err}`)),
      );
    });
    /** Why clients missed an event: their connections or the sender's closed, if they did. */
    const whyMissed = () => {
      const closed = new Map<number, number>();
      for (const l of listeners) {
        if (l.closedWith !== undefined)
          closed.set(l.closedWith, (closed.get(l.closedWith) ?? 0) + 1);
      }
      const parts = [...closed].map(([code, n]) => `${n} closed with code ${code}`);
      if (senderLost) parts.push(`the sender disconnected (${senderLost})`);
      return parts.length > 0 ? ` (${parts.join('; ')})` : ' (every connection still open)';
    };
    const delays: number[] = [];
    const firsts: number[] = [];
    const nets: (NetCounters | undefined)[] = [];
    const cpuBefore = [...cpuOf].map(([name, pid]) => [name, pid, cpuTimes(pid)] as const);
    const selfBefore = process.cpuUsage();
    const eventPrefix = Buffer.from(`42[${JSON.stringify(EVENTS.updatedModel)},`);
    for (let p = 0; p < posts; p++) {
      const source = `fanout ${Date.now()} ${p}`;
      // The post's text as it appears in the event's JSON (it needs no escaping).
      const needle = Buffer.from(`"source":${JSON.stringify(source)}`);
      let pending = listeners.length;
      let first: number | undefined;
      const netBefore = netCounters();
      const t0 = performance.now();
      const allReceived = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `${pending} of ${listeners.length} clients missed the event of post ${p + 1}${whyMissed()}`,
              ),
            ),
          POST_TIMEOUT_MS,
        );
        for (const l of listeners) {
          let heard = false;
          l.onEvent = (frame) => {
            if (heard || !frame.subarray(0, eventPrefix.length).equals(eventPrefix)) return;
            if (frame.indexOf(needle, eventPrefix.length) === -1) return;
            heard = true;
            first ??= performance.now() - t0;
            if (--pending === 0) {
              clearTimeout(timer);
              resolve();
            }
          };
        }
      });
      // The gateway's acknowledgement: a post it could not make says why, rather than every
      // client missing the event.
      const posted = new Promise<never>((_resolve, reject) => {
        sender?.emit(EVENTS.postMessage, { source }, token, (ack: { error?: string }) => {
          if (ack?.error) reject(new Error(`post_message refused: ${JSON.stringify(ack)}`));
        });
      });
      posted.catch(() => undefined);
      await Promise.race([allReceived, posted]);
      delays.push(performance.now() - t0);
      firsts.push(first ?? 0);
      nets.push(netDelta(netBefore, netCounters()));
    }
    const self = process.cpuUsage(selfBefore);
    const cpuMsPerPost: Record<string, number> = {
      'bench (clients)': Math.round((self.user + self.system) / 1000 / posts),
    };
    const kernelMsPerPost: Record<string, number> = {
      'bench (clients)': Math.round(self.system / 1000 / posts),
    };
    for (const [name, pid, before] of cpuBefore) {
      const after = cpuTimes(pid);
      if (before === undefined || after === undefined) continue;
      cpuMsPerPost[name] = Math.round(
        (after.user + after.system - before.user - before.system) / posts,
      );
      kernelMsPerPost[name] = Math.round((after.system - before.system) / posts);
    }
    return {
      ...spread(delays),
      clients,
      first: spread(firsts),
      connectSeconds,
      connectRetries,
      cpuMsPerPost,
      kernelMsPerPost,
      postsMs: delays.map((d) => Math.round(d)),
      ...(nets.every((n) => n !== undefined) ? { postsNet: nets as NetCounters[] } : {}),
    };
  } finally {
    sender?.close();
    for (const l of listeners) l.close();
  }
}
