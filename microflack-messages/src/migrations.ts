// The messages table, as the original's, plus the flag that makes link previews crash-safe.
import { isMysql, type Migration } from '@microflack/common';

export const migrations: Migration[] = [
  {
    name: '001-create-messages',
    async up(db) {
      await db.schema.createTable('messages', (t) => {
        t.increments('id');
        t.integer('created_at').notNullable();
        t.integer('updated_at').notNullable();
        t.text('source').notNullable();
        // Rendered links and previews can make html several times longer than its 4000-char source.
        t.text('html', 'mediumtext').notNullable();
        t.integer('user_id').notNullable();
        // Set while link previews are still to be fetched; whatever is left set at start is finished then.
        t.boolean('preview_pending').notNullable().defaultTo(false);
        // Serves `updated_since` with the (updated_at, id) order and the keyset cursor.
        t.index(['updated_at', 'id'], 'messages_updated_at_id');
        t.index(['user_id', 'updated_at', 'id'], 'messages_user_id_updated_at_id');
        t.index(['preview_pending'], 'messages_preview_pending');
      });
    },
    async down(db) {
      await db.schema.dropTable('messages');
    },
  },
  {
    // A per-row version that changes on every write, so a row's serialised JSON can be kept by
    // (id, version). updated_at cannot be that key: two writes in one second (a link preview right
    // after the post, two quick edits) leave it equal. A trigger bumps it, so every writer counts,
    // the service's own updates and any other (a script, an operator's SQL) alike.
    name: '002-message-version',
    async up(db) {
      await db.schema.alterTable('messages', (t) => {
        t.integer('version').notNullable().defaultTo(0);
      });
      // The list reads (id, updated_at, version) from these alone, never the rows it already has.
      await db.schema.alterTable('messages', (t) => {
        t.index(['updated_at', 'id', 'version'], 'messages_updated_at_id_version');
        t.index(
          ['user_id', 'updated_at', 'id', 'version'],
          'messages_user_id_updated_at_id_version',
        );
      });
      await db.schema.alterTable('messages', (t) => {
        t.dropIndex([], 'messages_updated_at_id');
        t.dropIndex([], 'messages_user_id_updated_at_id');
      });
      if (isMysql(db)) {
        await db.raw(
          'CREATE TRIGGER messages_version BEFORE UPDATE ON messages FOR EACH ROW ' +
            'SET NEW.version = OLD.version + 1',
        );
      } else {
        // SQLite cannot assign NEW in a trigger: the row is bumped after, once (triggers do not
        // recurse by default, and the WHEN stops it anyway); changes() still counts only the update.
        await db.raw(
          'CREATE TRIGGER messages_version AFTER UPDATE ON messages FOR EACH ROW ' +
            'WHEN NEW.version = OLD.version BEGIN ' +
            'UPDATE messages SET version = OLD.version + 1 WHERE id = NEW.id; END',
        );
      }
    },
    async down(db) {
      await db.raw('DROP TRIGGER IF EXISTS messages_version');
      await db.schema.alterTable('messages', (t) => {
        t.index(['updated_at', 'id'], 'messages_updated_at_id');
        t.index(['user_id', 'updated_at', 'id'], 'messages_user_id_updated_at_id');
      });
      await db.schema.alterTable('messages', (t) => {
        t.dropIndex([], 'messages_updated_at_id_version');
        t.dropIndex([], 'messages_user_id_updated_at_id_version');
        t.dropColumn('version');
      });
    },
  },
];
