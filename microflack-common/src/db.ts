// A knex instance from DATABASE_URL (MariaDB via mysql2, or an embedded SQLite file), migrated at start.
import fs from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { logger } from './log.js';

const log = logger.child({ module: 'db' });

export type { Knex };

export interface Migration {
  name: string;
  up(db: Knex): Promise<void>;
  down?(db: Knex): Promise<void>;
}

export function isMysql(db: Knex): boolean {
  return db.client.config.client === 'mysql2';
}

/** Whether a DATABASE_URL names MariaDB/MySQL (mysql2); otherwise SQLite. */
function isMysqlUrl(databaseUrl: string | undefined): boolean {
  return databaseUrl !== undefined && /^mysql:\/\//.test(databaseUrl);
}

/** mysql2's prepared-statement cache per connection (unused: knex sends text queries). */
const MYSQL_PREPARED_STATEMENTS = 8;
/** mysql2's row-parser cache, one entry per result shape (column names and types). */
const MYSQL_PARSER_CACHE = 1000;

export function knexConfig(
  databaseUrl: string | undefined,
  home: string,
  service: string,
): Knex.Config {
  if (isMysqlUrl(databaseUrl)) {
    return {
      client: 'mysql2',
      connection: {
        uri: databaseUrl,
        connectTimeout: 3000,
        supportBigNumbers: true,
        charset: 'utf8mb4',
        // knex sends text queries, never prepared statements, yet mysql2 gives each connection a
        // statement cache of 16,000 slots allocated up front (512 KB of heap a connection, 8 MB
        // with the pool full): kept to a few slots.
        maxPreparedStatements: MYSQL_PREPARED_STATEMENTS,
      } as Knex.MySql2ConnectionConfig,
      // Small pool: two cores here; a request that cannot get a connection soon fails with 503.
      pool: { min: 0, max: 16, idleTimeoutMillis: 30000 },
      acquireConnectionTimeout: 3000,
    };
  }
  const file = databaseUrl
    ? databaseUrl.replace(/^sqlite:(\/\/)?/, '')
    : path.join(home, 'data', `${service}.sqlite`);
  if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  return {
    client: 'better-sqlite3',
    connection: { filename: file },
    useNullAsDefault: true,
    pool: {
      afterCreate: (conn: { pragma(s: string): void }, done: (err: Error | null) => void) => {
        conn.pragma('journal_mode = WAL');
        conn.pragma('busy_timeout = 3000');
        done(null);
      },
    },
  };
}

/** Opens the database and runs the service's migrations; safe when several instances start at once. */
export async function openDb(
  opts: { databaseUrl?: string; home: string; service: string },
  migrations: Migration[],
): Promise<Knex> {
  // Loaded here, not at import: services without a database do not pay its memory.
  const { default: knexFactory } = await import('knex');
  if (isMysqlUrl(opts.databaseUrl)) {
    // mysql2 keeps a compiled row parser per result shape in a cache of 15,000 slots allocated up
    // front (480 KB); a service has a few dozen shapes.
    const { default: mysql2 } = await import('mysql2');
    mysql2.setMaxParserCache(MYSQL_PARSER_CACHE);
  }
  const db = knexFactory(knexConfig(opts.databaseUrl, opts.home, opts.service));
  await migrate(db, migrations);
  return db;
}

/**
 * The /healthz check of a service's database: `select 1` on a connection of its own, so that it
 * tells whether the database answers, not whether the request pool has a connection free. With
 * the pool's, slow queries holding every connection made each instance's check time out at
 * once, and HAProxy took every instance out (the LB's 503 to everything) exactly under load.
 * The connection goes with the database (`db.destroy()`).
 */
export function databaseCheck(db: Knex): () => Promise<unknown> {
  let own: Promise<Knex> | undefined;
  const open = async (): Promise<Knex> => {
    const { default: knexFactory } = await import('knex');
    const checker = knexFactory({
      ...db.client.config,
      pool: { min: 0, max: 1, idleTimeoutMillis: 60000 },
      acquireConnectionTimeout: 1000,
    });
    // Closed with the database. knex defines destroy read-only (but configurable).
    const destroy = db.destroy.bind(db);
    Object.defineProperty(db, 'destroy', {
      configurable: true,
      value: async (callback?: (err?: unknown) => void) => {
        await checker.destroy();
        return destroy(callback as never);
      },
    });
    return checker;
  };
  return async () => (await (own ??= open())).raw('select 1');
}

export async function migrate(db: Knex, migrations: Migration[]): Promise<void> {
  const source: Knex.MigrationSource<Migration> = {
    getMigrations: async () => migrations,
    getMigrationName: (m) => m.name,
    getMigration: async (m) => ({ up: m.up, down: m.down ?? (async () => undefined) }),
  };
  if (!isMysql(db)) {
    await db.migrate.latest({ migrationSource: source });
    return;
  }
  // knex's own lock row races when instances create its tables at once; a MariaDB named lock,
  // held on one connection for the whole run, serialises the instances instead.
  const conn = await db.client.acquireConnection();
  try {
    const name = `microflack_migrate_${db.client.database()}`;
    const [rows] = await db.raw('SELECT GET_LOCK(?, 60) AS got', [name]).connection(conn);
    if (Number(rows[0]?.got) !== 1)
      throw new Error('timed out waiting for another instance to migrate');
    try {
      await db.migrate.latest({ migrationSource: source });
    } finally {
      await db.raw('SELECT RELEASE_LOCK(?)', [name]).connection(conn);
    }
  } finally {
    await db.client.releaseConnection(conn);
  }
  log.debug('migrations applied');
}

/** Whether an error means the database could not be reached (answer 503, not 500). */
export function isDbUnavailable(err: unknown): boolean {
  const e = err as { code?: string; name?: string; message?: string; fatal?: boolean };
  if (e?.name === 'KnexTimeoutError') return true;
  return (
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'PROTOCOL_CONNECTION_LOST',
      'ER_SERVER_SHUTDOWN',
      'ER_CON_COUNT_ERROR',
      'SQLITE_BUSY',
    ].includes(e?.code ?? '') || e?.fatal === true
  );
}

/** Whether an error is a unique index refusing a row (MariaDB or SQLite). */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'ER_DUP_ENTRY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}
