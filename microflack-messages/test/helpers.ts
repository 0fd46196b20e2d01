// Shared by the messages tests: an app on a real database, and a Socket.IO subscriber on the shared Redis.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdapter } from '@socket.io/redis-adapter';
import {
  EVENTS,
  openDb,
  parseHostPort,
  UpdatedModelEventSchema,
  type Knex,
  type Platform,
} from '@microflack/common';
import { createTestDatabase, tempDir, waitFor, type TestStack } from '@microflack/common/testing';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { io as connect } from 'socket.io-client';
import { createApp, type MessagesApp } from '../src/app.js';
import { migrations } from '../src/migrations.js';
import type { PreviewSettings } from '../src/previewer.js';

export type DbKind = 'mariadb' | 'sqlite';

export interface TestApp {
  app: MessagesApp;
  db: Knex;
  platform: Platform;
  token(userId: number): string;
  close(): Promise<void>;
}

export async function openMessagesDb(kind: DbKind, databaseUrl?: string): Promise<Knex> {
  const url = databaseUrl ?? (kind === 'mariadb' ? await createTestDatabase('msg') : undefined);
  return openDb({ databaseUrl: url, home: tempDir('msg-home'), service: 'messages' }, migrations);
}

export async function startApp(
  stack: TestStack,
  kind: DbKind,
  previews: PreviewSettings = { allowPrivate: true },
  db?: Knex,
): Promise<TestApp> {
  const database = db ?? (await openMessagesDb(kind));
  const platform = await stack.platform();
  const app = createApp({ db: database, auth: platform.auth, events: platform.events, previews });
  return {
    app,
    db: database,
    platform,
    token: (userId) => platform.auth.generateToken(userId),
    async close() {
      await app.previewer.close();
      await database.destroy();
    },
  };
}

export interface Subscriber {
  events: Array<{ class: string; model: Record<string, unknown> }>;
  waitForEvent(
    what: string,
    match: (e: { class: string; model: Record<string, unknown> }) => boolean,
  ): Promise<{ class: string; model: Record<string, unknown> }>;
  close(): Promise<void>;
}

/** A Socket.IO server with the Redis adapter, as microflack-socketio runs it, and a client of it. */
export async function subscribe(redisHostPort: string): Promise<Subscriber> {
  const pub = new Redis(parseHostPort(redisHostPort));
  const sub = pub.duplicate();
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  const client = connect(`http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`, {
    transports: ['websocket'],
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('connect_error', reject);
  });
  const events: Subscriber['events'] = [];
  // Every event must be what the contract says updated_model carries.
  const offContract: string[] = [];
  client.on(EVENTS.updatedModel, (e: Subscriber['events'][number]) => {
    const checked = UpdatedModelEventSchema.safeParse(e);
    if (!checked.success) offContract.push(`${JSON.stringify(e)}: ${checked.error.message}`);
    events.push(e);
  });
  return {
    events,
    async waitForEvent(what, match) {
      await waitFor(what, () => events.some(match), 5000);
      assert.deepEqual(offContract, [], 'updated_model events off the contract');
      return events.find(match) as Subscriber['events'][number];
    },
    async close() {
      client.close();
      io.close();
      pub.disconnect();
      sub.disconnect();
    },
  };
}
