// The users database schema, applied in order at start.
import { isMysql, type Migration } from '@microflack/common';
import { nicknameKey } from '@microflack/common/api';

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
  {
    // A nickname's identity (nicknameKey: NFKC and case folded), unique: "Ada", "ADA", "ａｄａ" are
    // one user. Existing rows get their key; of rows that already collide, the oldest keeps it and
    // the others get "<key>#<id>", so that they stay distinct and nobody new can take any of them.
    name: '003_nickname_key',
    async up(db) {
      await db.schema.alterTable('users', (t) => {
        const key = t.string('nickname_key', 128).nullable();
        if (isMysql(db)) key.collate('utf8mb4_bin');
      });
      const rows: Array<{ id: number; nickname: string }> = await db('users')
        .select('id', 'nickname')
        .orderBy('id');
      const taken = new Set<string>();
      for (const { id, nickname } of rows) {
        let key = nicknameKey(nickname);
        if (taken.has(key)) key = `${key}#${id}`;
        taken.add(key);
        await db('users').where({ id }).update({ nickname_key: key });
      }
      await db.schema.alterTable('users', (t) => {
        t.unique(['nickname_key'], { indexName: 'users_nickname_key_unique' });
      });
    },
    async down(db) {
      await db.schema.alterTable('users', (t) => {
        t.dropUnique(['nickname_key'], 'users_nickname_key_unique');
      });
      await db.schema.alterTable('users', (t) => {
        t.dropColumn('nickname_key');
      });
    },
  },
];
