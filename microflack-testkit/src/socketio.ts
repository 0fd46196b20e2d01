// Socket.IO for tests: a server with the Redis adapter (as microflack-socketio runs it), browser-like
// clients, and a subscriber that collects the platform's updated_model events.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { io as connect, type Socket } from 'socket.io-client';
import { EVENTS, parseHostPort, UpdatedModelEventSchema } from '@microflack/common';
import { waitFor } from './processes.js';

export interface AdapterServer {
  /** http://127.0.0.1:<port> */
  url: string;
  io: Server;
  close(): Promise<void>;
}

/** A Socket.IO server with the Redis adapter on `redisHostPort`: what services emit through reaches its clients. */
export async function adapterServer(redisHostPort: string): Promise<AdapterServer> {
  const pub = new Redis(parseHostPort(redisHostPort));
  const sub = pub.duplicate();
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  // The adapter subscribes in the background: until Redis has the pattern subscription, events
  // published now would reach nobody, and a test waiting for one would wait in vain. A PING on the
  // subscriber is answered after the subscriptions sent before it (as socketio does at start).
  await sub.ping();
  return {
    url: `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`,
    io,
    async close() {
      io.close();
      pub.disconnect();
      sub.disconnect();
    },
  };
}

/** A connected client (no reconnection, its own connection); rejects on connect_error. */
export async function connectClient(url: string, transports?: string[]): Promise<Socket> {
  const socket = connect(url, { transports, reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  return socket;
}

export interface UpdatedModel {
  class: string;
  model: Record<string, unknown>;
}

export interface Subscriber {
  /** Every updated_model event, in arrival order. */
  events: UpdatedModel[];
  /** Waits (5 s) for an event matching `match`, then holds every event so far to the contract. */
  waitForEvent(what: string, match: (e: UpdatedModel) => boolean): Promise<UpdatedModel>;
  /** Events of class User about this nickname, in arrival order (held to the contract). */
  forUser(nickname: string): Record<string, unknown>[];
  close(): Promise<void>;
}

/** A Socket.IO server with the Redis adapter and one browser-like client of it, collecting updated_model. */
export async function subscribe(redisHostPort: string): Promise<Subscriber> {
  const server = await adapterServer(redisHostPort);
  const client = connect(server.url, { transports: ['websocket'] });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('connect_error', reject);
  });
  const events: UpdatedModel[] = [];
  // Every event must be what the contract says updated_model carries.
  const offContract: string[] = [];
  client.on(EVENTS.updatedModel, (e: UpdatedModel) => {
    const checked = UpdatedModelEventSchema.safeParse(e);
    if (!checked.success) offContract.push(`${JSON.stringify(e)}: ${checked.error.message}`);
    events.push(e);
  });
  return {
    events,
    async waitForEvent(what, match) {
      await waitFor(what, () => events.some(match), 5000);
      assert.deepEqual(offContract, [], 'updated_model events off the contract');
      return events.find(match) as UpdatedModel;
    },
    forUser(nickname) {
      assert.deepEqual(offContract, [], 'updated_model events off the contract');
      return events
        .filter((e) => e.class === 'User' && e.model.nickname === nickname)
        .map((e) => e.model);
    },
    async close() {
      client.close();
      await server.close();
    },
  };
}
