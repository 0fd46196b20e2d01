// The messages table, as the original's, plus the flag that makes link previews crash-safe.
import type { Migration } from '@microflack/common';

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
];
