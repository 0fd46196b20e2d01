// The users database schema, applied in order at start.
import { isMysql, type Migration } from '@microflack/common';

export const migrations: Migration[] = [
  {
    name: '001_create_users',
    async up(db) {
      const mysql = isMysql(db);
      await db.schema.createTable('users', (t) => {
        if (mysql) t.charset('utf8mb4');
        t.increments('id');
        t.bigInteger('created_at').notNullable();
        t.bigInteger('updated_at').notNullable();
        t.bigInteger('last_seen_at').notNullable();
        const nickname = t.string('nickname', 32).notNullable().unique();
        // Binary collation: MariaDB compares nicknames exactly, as SQLite does (no case or accent folding).
        if (mysql) nickname.collate('utf8mb4_bin');
        t.string('password_hash', 128).notNullable();
        t.boolean('online').notNullable().defaultTo(false);
        t.index(['updated_at', 'nickname']);
        t.index(['online', 'last_seen_at']);
      });
    },
    async down(db) {
      await db.schema.dropTable('users');
    },
  },
  {
    // A per-row version that changes on every write, so a user's serialised JSON can be kept by
    // (id, version). updated_at cannot be that key: last_seen_at (in the JSON) changes without it,
    // and two writes in one second leave it equal. A trigger bumps it, so every writer counts.
    name: '002_user_version',
    async up(db) {
      await db.schema.alterTable('users', (t) => {
        t.integer('version').notNullable().defaultTo(0);
      });
      // The list reads (id, version) in its order from this index alone.
      await db.schema.alterTable('users', (t) => {
        t.index(['updated_at', 'nickname', 'id', 'version'], 'users_updated_at_nickname_version');
      });
      await db.schema.alterTable('users', (t) => {
        t.dropIndex(['updated_at', 'nickname']);
      });
      if (isMysql(db)) {
        await db.raw(
          'CREATE TRIGGER users_version BEFORE UPDATE ON users FOR EACH ROW ' +
            'SET NEW.version = OLD.version + 1',
        );
      } else {
        // SQLite cannot assign NEW in a trigger: the row is bumped after, once (triggers do not
        // recurse by default, and the WHEN stops it anyway); changes() still counts only the update.
        await db.raw(
          'CREATE TRIGGER users_version AFTER UPDATE ON users FOR EACH ROW ' +
            'WHEN NEW.version = OLD.version BEGIN ' +
            'UPDATE users SET version = OLD.version + 1 WHERE id = NEW.id; END',
        );
      }
    },
    async down(db) {
      await db.raw('DROP TRIGGER IF EXISTS users_version');
      await db.schema.alterTable('users', (t) => {
        t.index(['updated_at', 'nickname']);
      });
      await db.schema.alterTable('users', (t) => {
        t.dropIndex([], 'users_updated_at_nickname_version');
        t.dropColumn('version');
      });
    },
  },
];
