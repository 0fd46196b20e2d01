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
];
