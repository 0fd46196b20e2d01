// What the users tests share: an app on a fresh database of either kind, and an event listener.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { io as connect, type Socket } from 'socket.io-client';
import {
  EVENTS,
  logger,
  openDb,
  parseHostPort,
  UpdatedModelEventSchema,
  type Knex,
  type Platform,
} from '@microflack/common';
import { createTestDatabase, tempDir, type TestStack } from '@microflack/common/testing';
import { createApp, type Deps } from '../src/app.js';
import { migrations } from '../src/migrations.js';

// Request logs only when asked for: LOG_LEVEL=info node scripts/run-tests.mjs ...
logger.level = process.env.LOG_LEVEL ?? 'warn';

export type DbKind = 'mariadb' | 'sqlite';
export const DB_KINDS: DbKind[] = ['mariadb', 'sqlite'];

/** A migrated users database: a new MariaDB database, or the embedded SQLite default (no URL). */
export async function openTestDb(kind: DbKind, url?: string): Promise<Knex> {
  const databaseUrl = kind === 'mariadb' ? (url ?? (await createTestDatabase('users'))) : undefined;
  return openDb({ databaseUrl, home: tempDir('users-home'), service: 'users' }, migrations);
}

export async function usersApp(
  stack: TestStack,
  kind: DbKind,
  extra: Partial<Deps> = {},
  databaseUrl?: string,
): Promise<{ app: ReturnType<typeof createApp>; db: Knex; platform: Platform }> {
  const db = await openTestDb(kind, databaseUrl);
  const platform = await stack.platform();
  const app = createApp({
    db,
    auth: platform.auth,
    events: platform.events,
    health: platform.health,
    bcryptRounds: 10,
    ...extra,
  });
  return { app, db, platform };
}

let seq = 0;
/** A nickname no other test (or parallel test file) uses. */
export function nick(prefix = 'u'): string {
  return `${prefix}${process.pid % 10000}_${Date.now() % 100000}_${seq++}`;
}

export interface UpdatedModel {
  class: string;
  model: Record<string, unknown>;
}

/** A Socket.IO server with the Redis adapter on the shared Redis, and one browser-like client. */
export async function listenForEvents(redisHostPort: string) {
  const pub = new Redis(parseHostPort(redisHostPort));
  const sub = pub.duplicate();
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
  const client: Socket = connect(url, { transports: ['websocket'] });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('connect_error', reject);
  });
  const received: UpdatedModel[] = [];
  // Every event must be what the contract says updated_model carries.
  const offContract: string[] = [];
  client.on(EVENTS.updatedModel, (data: UpdatedModel) => {
    const checked = UpdatedModelEventSchema.safeParse(data);
    if (!checked.success) offContract.push(`${JSON.stringify(data)}: ${checked.error.message}`);
    received.push(data);
  });
  return {
    received,
    /** Events of class User about this nickname, in arrival order. */
    forUser(nickname: string): Record<string, unknown>[] {
      assert.deepEqual(offContract, [], 'updated_model events off the contract');
      return received
        .filter((e) => e.class === 'User' && e.model.nickname === nickname)
        .map((e) => e.model);
    },
    async close() {
      client.close();
      io.close();
      pub.disconnect();
      sub.disconnect();
    },
  };
}
