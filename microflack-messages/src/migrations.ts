// The messages table, as the original's, plus the flag that makes link previews crash-safe; rooms,
// their members and read markers, reactions, mentions and the full-text index (003); the poster's
// Idempotency-Key (004).
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
  {
    // Rooms (1 is general, the original's one room: every existing message is in it), members with
    // their read markers, reactions, mentions, tombstones and the full-text index.
    name: '003-rooms',
    async up(db) {
      await db.schema.createTable('rooms', (t) => {
        t.increments('id');
        t.string('name', 320).notNullable();
        t.string('topic', 1000).notNullable().defaultTo('');
        t.boolean('private').notNullable().defaultTo(false);
        // "<lower user id>:<higher user id>" for a direct room, unique: one room per pair.
        t.string('direct_key', 40).nullable().unique('rooms_direct_key');
        t.integer('created_by').notNullable().defaultTo(0);
        t.integer('created_at').notNullable();
        t.integer('updated_at').notNullable();
        // The public rooms, by id (the room list's keyset).
        t.index(['private', 'id'], 'rooms_private_id');
      });
      const now = Math.floor(Date.now() / 1000);
      await db('rooms').insert({
        id: 1,
        name: 'general',
        topic: '',
        private: false,
        created_by: 0,
        created_at: now,
        updated_at: now,
      });
      await db.schema.createTable('room_members', (t) => {
        t.integer('room_id').notNullable();
        t.integer('user_id').notNullable();
        t.integer('joined_at').notNullable();
        t.integer('last_read_id').notNullable().defaultTo(0);
        t.primary(['room_id', 'user_id']);
        t.index(['user_id', 'room_id'], 'room_members_user_id_room_id');
      });
      await db.schema.alterTable('messages', (t) => {
        t.integer('room_id').notNullable().defaultTo(1);
        t.boolean('deleted').notNullable().defaultTo(false);
        // The reactions as the JSON shows them (a summary of the reactions table, kept with the
        // row so that a reaction bumps the row's version and updated_at like any change).
        t.text('reactions').nullable();
      });
      await db.schema.alterTable('messages', (t) => {
        // The list (a room's last day, by updated_at), the history (by id) and the unread count.
        t.index(['room_id', 'updated_at', 'id', 'version'], 'messages_room_updated_at_id_version');
        t.index(
          ['room_id', 'user_id', 'updated_at', 'id', 'version'],
          'messages_room_user_updated_at_id_version',
        );
        t.index(['room_id', 'id'], 'messages_room_id_id');
      });
      await db.schema.createTable('reactions', (t) => {
        t.integer('message_id').notNullable();
        t.string('emoji', 64).notNullable();
        t.integer('user_id').notNullable();
        t.integer('created_at').notNullable();
        t.primary(['message_id', 'emoji', 'user_id']);
      });
      await db.schema.createTable('mentions', (t) => {
        // Who is mentioned, as a nickname's identity (nicknameKey): the users service owns
        // nicknames; the count asks it for the caller's.
        t.string('nickname_key', 160).notNullable();
        t.integer('room_id').notNullable();
        t.integer('message_id').notNullable();
        t.primary(['nickname_key', 'room_id', 'message_id']);
        t.index(['message_id'], 'mentions_message_id');
      });
      if (isMysql(db)) {
        await db.raw('ALTER TABLE messages ADD FULLTEXT INDEX messages_source_ft (source)');
      } else {
        // An external-content FTS5 table over messages.source, kept by triggers.
        await db.raw(
          "CREATE VIRTUAL TABLE messages_fts USING fts5(source, content='messages', content_rowid='id')",
        );
        await db.raw(
          'CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN ' +
            'INSERT INTO messages_fts(rowid, source) VALUES (new.id, new.source); END',
        );
        await db.raw(
          'CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN ' +
            "INSERT INTO messages_fts(messages_fts, rowid, source) VALUES ('delete', old.id, old.source); END",
        );
        await db.raw(
          'CREATE TRIGGER messages_fts_update AFTER UPDATE OF source ON messages BEGIN ' +
            "INSERT INTO messages_fts(messages_fts, rowid, source) VALUES ('delete', old.id, old.source); " +
            'INSERT INTO messages_fts(rowid, source) VALUES (new.id, new.source); END',
        );
        await db.raw("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')");
      }
    },
    async down(db) {
      if (isMysql(db)) {
        await db.raw('ALTER TABLE messages DROP INDEX messages_source_ft');
      } else {
        for (const t of ['insert', 'delete', 'update']) {
          await db.raw(`DROP TRIGGER IF EXISTS messages_fts_${t}`);
        }
        await db.raw('DROP TABLE IF EXISTS messages_fts');
      }
      await db.schema.dropTable('mentions');
      await db.schema.dropTable('reactions');
      await db.schema.alterTable('messages', (t) => {
        t.dropIndex([], 'messages_room_updated_at_id_version');
        t.dropIndex([], 'messages_room_user_updated_at_id_version');
        t.dropIndex([], 'messages_room_id_id');
      });
      await db.schema.alterTable('messages', (t) => {
        t.dropColumn('room_id');
        t.dropColumn('deleted');
        t.dropColumn('reactions');
      });
      await db.schema.dropTable('room_members');
      await db.schema.dropTable('rooms');
    },
  },
  {
    // The poster's Idempotency-Key: a post sent again (a retry after a lost answer, by the client,
    // the gateway or HAProxy) finds the message the first one made instead of making a second.
    // Unique per user; posts without a key leave it NULL, which a unique index never compares.
    name: '004-idempotency-key',
    async up(db) {
      await db.schema.alterTable('messages', (t) => {
        t.string('idempotency_key', 64).nullable();
      });
      await db.schema.alterTable('messages', (t) => {
        t.unique(['user_id', 'idempotency_key'], { indexName: 'messages_user_idempotency_key' });
      });
    },
    async down(db) {
      await db.schema.alterTable('messages', (t) => {
        t.dropUnique(['user_id', 'idempotency_key'], 'messages_user_idempotency_key');
      });
      await db.schema.alterTable('messages', (t) => {
        t.dropColumn('idempotency_key');
      });
    },
  },
  {
    // What the keyed post asked for (its room and source, hashed): a post sent again is told from
    // another post under the same key by this, not by the message as it is now, which an edit or a
    // delete may have changed since (a late try of an edited post was answered 422). NULL for posts
    // without a key, and for keyed posts stored before this (compared as before).
    name: '005-idempotency-fingerprint',
    async up(db) {
      await db.schema.alterTable('messages', (t) => {
        t.string('idempotency_fingerprint', 22).nullable();
      });
    },
    async down(db) {
      await db.schema.alterTable('messages', (t) => {
        t.dropColumn('idempotency_fingerprint');
      });
    },
  },
];
