// The users and messages apps in the test process, on a fresh database of either kind, for the
// tests of those services and of the services that talk to them (tokens checks passwords with users).
import { logger, openDb, type Knex, type Platform } from '@microflack/common';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp as createMessagesApp, type MessagesApp } from '@microflack/messages/app';
import { createDirectory } from '@microflack/messages/directory';
import { migrations as messagesMigrations } from '@microflack/messages/migrations';
import { createApp as createUsersApp, type Deps as UsersDeps } from '@microflack/users/app';
import { migrations as usersMigrations } from '@microflack/users/migrations';
import { createTestDatabase, tempDir, type TestStack } from './index.js';

// Request logs only when asked for: LOG_LEVEL=info node scripts/run-tests.mjs ...
logger.level = process.env.LOG_LEVEL ?? 'warn';

export type DbKind = 'mariadb' | 'sqlite';
export const DB_KINDS: DbKind[] = ['mariadb', 'sqlite'];

let seq = 0;
/** A nickname no other test (or parallel test file) uses. */
export function nick(prefix = 'u'): string {
  return `${prefix}${process.pid % 10000}_${Date.now() % 100000}_${seq++}`;
}

/** A migrated users database: a new MariaDB database, or the embedded SQLite default (no URL). */
export async function openTestDb(kind: DbKind, url?: string): Promise<Knex> {
  const databaseUrl = kind === 'mariadb' ? (url ?? (await createTestDatabase('users'))) : undefined;
  return openDb({ databaseUrl, home: tempDir('users-home'), service: 'users' }, usersMigrations);
}

export async function usersApp(
  stack: TestStack,
  kind: DbKind,
  extra: Partial<UsersDeps> = {},
  databaseUrl?: string,
): Promise<{ app: ReturnType<typeof createUsersApp>; db: Knex; platform: Platform }> {
  const db = await openTestDb(kind, databaseUrl);
  const platform = await stack.platform();
  const app = createUsersApp({
    db,
    auth: platform.auth,
    events: platform.events,
    health: platform.health,
    bcryptRounds: 10,
    ...extra,
  });
  return { app, db, platform };
}

export type PreviewSettings = NonNullable<Parameters<typeof createMessagesApp>[0]['previews']>;

export interface TestApp {
  app: MessagesApp;
  db: Knex;
  platform: Platform;
  token(userId: number): string;
  /** The users app the messages app asks who users are (as through the LB). */
  usersApp: ReturnType<typeof createUsersApp>;
  /** A real user, made in the users app the messages app asks who users are. */
  user(prefix?: string): Promise<{ id: number; nickname: string; token: string }>;
  close(): Promise<void>;
}

export async function openMessagesDb(kind: DbKind, databaseUrl?: string): Promise<Knex> {
  const url = databaseUrl ?? (kind === 'mariadb' ? await createTestDatabase('msg') : undefined);
  return openDb(
    { databaseUrl: url, home: tempDir('msg-home'), service: 'messages' },
    messagesMigrations,
  );
}

/** The messages app (previews allowed to private addresses unless told otherwise). */
export async function startMessagesApp(
  stack: TestStack,
  kind: DbKind,
  previews: PreviewSettings = { allowPrivate: true },
  db?: Knex,
): Promise<TestApp> {
  const database = db ?? (await openMessagesDb(kind));
  // The users service the messages app asks (as through the LB) who user ids are: a real one, on
  // the embedded database (what it stores is not what these tests are about).
  const users = await usersApp(stack, 'sqlite');
  const usersServer = http.createServer(users.app);
  await new Promise<void>((r) => usersServer.listen(0, '127.0.0.1', r));
  const usersAddress = `127.0.0.1:${(usersServer.address() as AddressInfo).port}`;
  const platform = await stack.platform({ LB: `http://${usersAddress}` });
  const app = createMessagesApp({
    db: database,
    auth: platform.auth,
    events: platform.events,
    directory: createDirectory(platform.lb),
    previews,
  });
  return {
    app,
    db: database,
    platform,
    token: (userId) => platform.auth.generateToken(userId),
    usersApp: users.app,
    async user(prefix = 'u') {
      const nickname = nick(prefix);
      const res = await fetch(`http://${usersAddress}/api/users`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ nickname, password: 'pw-123456' }),
      });
      if (res.status !== 201) throw new Error(`user not created: ${res.status}`);
      const id = ((await res.json()) as { id: number }).id;
      return { id, nickname, token: platform.auth.generateToken(id) };
    },
    async close() {
      await app.previewer.close();
      await new Promise<void>((r) => {
        usersServer.close(() => r());
        usersServer.closeAllConnections();
      });
      await users.db.destroy();
      await database.destroy();
    },
  };
}
