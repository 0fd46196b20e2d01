// The messages table: queries and the JSON a message is answered with.
import { createHash } from 'node:crypto';
import {
  isDbUnavailable,
  isMysql,
  isUniqueViolation,
  roomSocketRoom,
  type Knex,
  type Message,
} from '@microflack/common';
import { GENERAL_ROOM_ID, nicknameKey, type Reaction } from '@microflack/common/api';

export interface MessageRow {
  id: number;
  created_at: number;
  updated_at: number;
  source: string;
  html: string;
  user_id: number;
  room_id: number;
  deleted: boolean | number;
  /** The reactions' JSON (Reaction[]), null when none. */
  reactions: string | null;
}

/** A message as the API answers it and updated_model carries it: the contract's Message. */
export type MessageJson = Message;

// Only what the JSON needs: the list is the hot path (every client polls it).
const COLUMNS = [
  'id',
  'created_at',
  'updated_at',
  'source',
  'html',
  'user_id',
  'room_id',
  'deleted',
  'reactions',
] as const;

export const SECONDS_PER_DAY = 24 * 60 * 60;

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * Who hears of a room's changes: general's go to every socket (the original's updated_model, for
 * the original's clients); any other room's only to its members' sockets (the gateway joins them).
 */
export function audienceOf(roomId: number): string[] | undefined {
  return roomId === GENERAL_ROOM_ID ? undefined : [roomSocketRoom(roomId)];
}

export function messageUrl(id: number): string {
  return `/api/messages/${id}`;
}

export function toJson(m: MessageRow): MessageJson {
  return {
    id: m.id,
    created_at: m.created_at,
    updated_at: m.updated_at,
    source: m.source,
    html: m.html,
    user_id: m.user_id,
    room_id: m.room_id,
    ...(m.deleted ? { deleted: true as const } : {}),
    ...(m.reactions ? { reactions: JSON.parse(m.reactions) as Reaction[] } : {}),
    _links: { self: messageUrl(m.id), user: `/api/users/${m.user_id}` },
  };
}

export async function findMessage(db: Knex, id: number): Promise<MessageRow | undefined> {
  return db<MessageRow>('messages')
    .where({ id })
    .first(...COLUMNS);
}

export interface ListQuery {
  roomId: number;
  since: number;
  userId?: number;
  limit?: number;
  /** Keyset cursor: the (updated_at, id) of the last message already seen. */
  after?: { updatedAt: number; id: number };
  /**
   * Read from the newest end instead (the list's order turned round, then back): the `limit`
   * messages just before this (updated_at, id), or the newest ones without it.
   */
  backward?: { until?: { updatedAt: number; id: number } };
}

/** A listed message: where it sorts, and which version of it is current. */
export interface MessageKey {
  id: number;
  updated_at: number;
  version: number;
}

/**
 * The list, as keys only: answered from the (room_id, updated_at, id, version) or (room_id, user_id,
 * updated_at, id, version) index alone, without reading the rows. The rows come from findMessagesByIds, for the
 * versions not already serialised.
 */
export async function listMessageKeys(db: Knex, q: ListQuery): Promise<MessageKey[]> {
  const order = q.backward ? 'desc' : 'asc';
  const query = db<MessageKey>('messages')
    .select('id', 'updated_at', 'version')
    .where('room_id', q.roomId)
    .andWhere('updated_at', '>=', q.since)
    .orderBy([
      { column: 'updated_at', order },
      { column: 'id', order },
    ]);
  const until = q.backward?.until;
  if (until) {
    query.andWhere((w) =>
      w
        .where('updated_at', '<', until.updatedAt)
        .orWhere((w2) => w2.where('updated_at', until.updatedAt).andWhere('id', '<', until.id)),
    );
  }
  if (q.userId !== undefined) query.andWhere('user_id', q.userId);
  const after = q.after;
  if (after) {
    // Strictly after the cursor in (updated_at, id) order: a page never repeats a row, however
    // many messages share one second.
    query.andWhere((w) =>
      w
        .where('updated_at', '>', after.updatedAt)
        .orWhere((w2) => w2.where('updated_at', after.updatedAt).andWhere('id', '>', after.id)),
    );
  }
  if (q.limit !== undefined) query.limit(q.limit);
  const keys: MessageKey[] = await query;
  if (q.backward) keys.reverse();
  return keys;
}

// Bound on the ids in one `IN (...)` (SQLite allows 32766 variables; MariaDB has no small limit).
const IDS_PER_QUERY = 1000;

/** The rows with these ids, each with the version it is read at (which may be newer than listed). */
export async function findMessagesByIds(
  db: Knex,
  ids: number[],
): Promise<Array<MessageRow & { version: number }>> {
  const out: Array<MessageRow & { version: number }> = [];
  for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
    const rows = await db<MessageRow & { version: number }>('messages')
      .select(...COLUMNS, 'version')
      .whereIn('id', ids.slice(i, i + IDS_PER_QUERY));
    out.push(...rows);
  }
  return out;
}

/** History: the `limit` messages of a room with an id below `before`, oldest first ((room_id, id) index). */
export async function historyKeys(
  db: Knex,
  roomId: number,
  before: number,
  limit: number,
): Promise<MessageKey[]> {
  const rows = await db<MessageKey>('messages')
    .select('id', 'updated_at', 'version')
    .where('room_id', roomId)
    .andWhere('id', '<', before)
    .orderBy('id', 'desc')
    .limit(limit);
  return rows.reverse();
}

// Words: letters, digits, underscore. Anything else separates them and never reaches the engine's
// query syntax (FTS5 phrases, MariaDB boolean operators).
const WORD = /[\p{L}\p{N}_]+/gu;
const MAX_SEARCH_WORDS = 10;

export function searchWords(q: string): string[] {
  return [...new Set(q.match(WORD) ?? [])].slice(0, MAX_SEARCH_WORDS);
}

/**
 * Full-text search (every word), newest first, below `before`: MariaDB's FULLTEXT index or
 * SQLite's FTS5 table; `rooms` is a subquery or list of the rooms the caller reads.
 */
export async function searchKeys(
  db: Knex,
  words: string[],
  rooms: number[] | Knex.QueryBuilder,
  before: number,
  limit: number,
): Promise<MessageKey[]> {
  let query;
  if (isMysql(db)) {
    query = db('messages as m')
      .select('m.id', 'm.updated_at', 'm.version')
      .whereRaw('MATCH(m.source) AGAINST (? IN BOOLEAN MODE)', [
        words.map((w) => `+${w}`).join(' '),
      ]);
  } else {
    query = db('messages_fts as f')
      .join('messages as m', 'm.id', 'f.rowid')
      .select('m.id', 'm.updated_at', 'm.version')
      .whereRaw('messages_fts MATCH ?', [words.map((w) => `"${w}"`).join(' ')]);
  }
  const rows = await query
    .whereIn('m.room_id', rooms)
    .andWhere('m.id', '<', before)
    .andWhere('m.deleted', false)
    .orderBy('m.id', 'desc')
    .limit(limit);
  return rows as MessageKey[];
}

/** What a new message is made of; `idempotency_key` is the poster's Idempotency-Key, if any. */
export interface NewMessage {
  source: string;
  html: string;
  user_id: number;
  room_id: number;
  preview_pending: boolean;
  idempotency_key?: string | null;
}

/**
 * A new message with its mentions: one statement without mentions, else one transaction (a
 * message is never stored without the mentions its text makes). With an Idempotency-Key that the
 * poster already used, nothing is written: the answer is the message that key made, `replayed`.
 */
export async function insertMessage(
  db: Knex,
  m: NewMessage,
): Promise<{ message: MessageRow; replayed: boolean; sameRequest: boolean }> {
  // No lookup before the write (a round trip on every post for the rare one sent again): the
  // unique index on (user_id, idempotency_key) refuses the second row, and then the first answers.
  const key = m.idempotency_key ?? null;
  const fingerprint = key === null ? null : requestFingerprint(m.room_id, m.source);
  const now = nowSeconds();
  const row: InsertRow = {
    source: m.source,
    html: m.html,
    user_id: m.user_id,
    room_id: m.room_id,
    preview_pending: m.preview_pending,
    idempotency_key: key,
    idempotency_fingerprint: fingerprint,
    created_at: now,
    updated_at: now,
  };
  const keys = mentionKeys(m.source);
  let id: number;
  try {
    id =
      keys.length === 0
        ? isMysql(db)
          ? await insertGrouped(db, row)
          : await insertOne(db, row)
        : await db.transaction(async (trx) => {
            const [inserted] = await trx('messages').insert(row);
            await trx('mentions').insert(mentionRows(keys, Number(inserted), m.room_id));
            return Number(inserted);
          });
  } catch (err) {
    // The same key sent twice at once: the other post made the message.
    if (key === null || !isUniqueViolation(err)) throw err;
    const earlier = await findByIdempotencyKey(db, m.user_id, key);
    if (!earlier) throw err;
    const { idempotency_fingerprint: asked, ...message } = earlier;
    // Stored before the fingerprint: compared with the message as it is now, as it was then.
    const sameRequest =
      asked !== null
        ? asked === fingerprint
        : message.source === m.source && message.room_id === m.room_id;
    return { message, replayed: true, sameRequest };
  }
  return {
    message: {
      id,
      created_at: now,
      updated_at: now,
      source: m.source,
      html: m.html,
      user_id: m.user_id,
      room_id: m.room_id,
      deleted: false,
      reactions: null,
    },
    replayed: false,
    sameRequest: true,
  };
}

/** A keyed post's room and source, hashed (128 bits of SHA-256, base64url: 22 characters). */
export function requestFingerprint(roomId: number, source: string): string {
  return createHash('sha256').update(`${roomId}\n${source}`).digest('base64url').slice(0, 22);
}

/** The message a user's post with this Idempotency-Key made, if any. */
export async function findByIdempotencyKey(
  db: Knex,
  userId: number,
  key: string,
): Promise<(MessageRow & { idempotency_fingerprint: string | null }) | undefined> {
  type Keyed = MessageRow & { idempotency_key: string; idempotency_fingerprint: string | null };
  return db<Keyed>('messages')
    .where('user_id', userId)
    .andWhere('idempotency_key', key)
    .first(...COLUMNS, 'idempotency_fingerprint');
}

type InsertRow = Omit<MessageRow, 'id' | 'deleted' | 'reactions'> & {
  preview_pending: boolean;
  idempotency_key: string | null;
  idempotency_fingerprint: string | null;
};

const INSERT_COLUMNS = [
  'source',
  'html',
  'user_id',
  'room_id',
  'preview_pending',
  'idempotency_key',
  'idempotency_fingerprint',
  'created_at',
  'updated_at',
] as const satisfies ReadonlyArray<keyof InsertRow>;

/** Rows in one grouped INSERT at most (a burst beyond it goes out as several). */
export const MAX_GROUPED_INSERT_ROWS = 200;

interface Waiting {
  row: InsertRow;
  resolve(id: number): void;
  reject(err: unknown): void;
}

/** Per database: the rows waiting for the end of this turn of the event loop. */
const waiting = new WeakMap<Knex, Waiting[]>();

/**
 * Group insert (MariaDB): the plain inserts (no mentions) made in one turn of the event loop go to
 * the database as one multi-row `INSERT ... RETURNING id`, so that a burst of posts costs one round
 * trip, one socket write each way and one commit instead of one per post. Each caller still gets
 * its own id, and its 201 only after the commit that holds its row. A statement the database refuses
 * wrote nothing (a statement is atomic): its rows are then written one by one, in order, so that a
 * row the database refuses fails its own post only. A database that is unreachable fails the whole group
 * (503 to each): the statement may have committed before the connection was lost, and writing the
 * rows again could store them twice.
 * RETURNING gives the ids in the rows' order, whatever the auto-increment settings (Galera
 * interleaves them across nodes).
 */
function insertGrouped(db: Knex, row: InsertRow): Promise<number> {
  return new Promise((resolve, reject) => {
    let group = waiting.get(db);
    if (!group) {
      const g: Waiting[] = [];
      group = g;
      waiting.set(db, g);
      setImmediate(() => void sendGroup(db, g));
    }
    group.push({ row, resolve, reject });
    if (group.length >= MAX_GROUPED_INSERT_ROWS) void sendGroup(db, group);
  });
}

async function sendGroup(db: Knex, group: Waiting[]): Promise<void> {
  if (waiting.get(db) !== group) return; // already sent (full)
  waiting.delete(db);
  const values = `(${INSERT_COLUMNS.map(() => '?').join(',')})`;
  const sql =
    `insert into \`messages\` (${INSERT_COLUMNS.map((c) => `\`${c}\``).join(',')}) ` +
    `values ${group.map(() => values).join(',')} returning \`id\``;
  try {
    const [rows] = (await db.raw(
      sql,
      group.flatMap((w) => INSERT_COLUMNS.map((c) => w.row[c])),
    )) as [Array<{ id: number | string }>];
    if (rows.length !== group.length) {
      throw new Error(`grouped insert returned ${rows.length} ids for ${group.length} rows`);
    }
    group.forEach((w, i) => w.resolve(Number((rows[i] as { id: number | string }).id)));
  } catch (err) {
    if (group.length === 1 || isDbUnavailable(err)) {
      for (const w of group) w.reject(err);
      return;
    }
    // Refused by the database (nothing of the statement was written): one row must not fail the
    // others' posts, so each is written on its own, and only a row refused alone fails. One after
    // the other, in the order the posts came, so that their ids keep that order (as the grouped
    // statement's would have): a client's two quick posts must not swap places in the room.
    for (const w of group) {
      try {
        w.resolve(await insertOne(db, w.row));
      } catch (rowErr) {
        w.reject(rowErr);
      }
    }
  }
}

async function insertOne(db: Knex, row: InsertRow): Promise<number> {
  return Number((await db('messages').insert(row))[0]);
}

// `@nickname`, not inside a word or an address (a@b.c): what counts as a mention of that user.
const MENTION = /(?<![\p{L}\p{N}_@.])@([\p{L}\p{N}_][\p{L}\p{N}_.-]{0,31})/gu;
const MAX_MENTIONS = 20;

/** The nickname identities a source mentions (trailing dots and dashes end the sentence). */
export function mentionKeys(source: string): string[] {
  const keys = new Set<string>();
  for (const m of source.matchAll(MENTION)) {
    const name = (m[1] as string).replace(/[.-]+$/, '');
    if (name) keys.add(nicknameKey(name));
    if (keys.size >= MAX_MENTIONS) break;
  }
  return [...keys];
}

/** The rows of a message's mentions. */
function mentionRows(keys: string[], messageId: number, roomId: number) {
  return keys.map((k) => ({ nickname_key: k, room_id: roomId, message_id: messageId }));
}

/** An edited message's mentions: those its new text makes, in place of the old ones. */
export async function setMentions(
  db: Knex,
  message: { id: number; room_id: number },
  source: string,
): Promise<void> {
  const keys = mentionKeys(source);
  await db.transaction(async (trx) => {
    await trx('mentions').where('message_id', message.id).delete();
    if (keys.length === 0) return;
    await trx('mentions')
      .insert(mentionRows(keys, message.id, message.room_id))
      .onConflict(['nickname_key', 'room_id', 'message_id'])
      .ignore();
  });
}

/** Erases the text, reactions and mentions; the row stays, a tombstone. */
export async function tombstone(db: Knex, id: number): Promise<void> {
  await db.transaction(async (trx) => {
    await trx('reactions').where('message_id', id).delete();
    await trx('mentions').where('message_id', id).delete();
    await trx('messages').where({ id }).update({
      source: '',
      html: '',
      deleted: true,
      reactions: null,
      preview_pending: false,
      updated_at: nowSeconds(),
    });
  });
}

/**
 * Adds or removes one reaction and writes the message's summary in the same transaction (which
 * bumps its version and updated_at, so the list and pollers see it). `false` when the message has
 * `maxEmoji` different emoji already and this one is new.
 */
export async function react(
  db: Knex,
  r: { messageId: number; emoji: string; userId: number; on: boolean },
  limits: { maxEmoji: number; maxListed: number },
): Promise<boolean> {
  return db.transaction(async (trx) => {
    if (r.on) {
      const kinds = await trx('reactions')
        .where('message_id', r.messageId)
        .distinct('emoji')
        .limit(limits.maxEmoji + 1);
      const known = kinds.some((k: { emoji: string }) => k.emoji === r.emoji);
      if (!known && kinds.length >= limits.maxEmoji) return false;
      await trx('reactions')
        .insert({
          message_id: r.messageId,
          emoji: r.emoji,
          user_id: r.userId,
          created_at: nowSeconds(),
        })
        .onConflict(['message_id', 'emoji', 'user_id'])
        .ignore();
    } else {
      await trx('reactions')
        .where({ message_id: r.messageId, emoji: r.emoji, user_id: r.userId })
        .delete();
    }
    const counts = await trx('reactions')
      .select('emoji')
      .min({ first: 'created_at' })
      .count({ n: '*' })
      .where('message_id', r.messageId)
      .groupBy('emoji')
      .orderBy([{ column: 'first' }, { column: 'emoji' }]);
    const summary: Reaction[] = [];
    for (const c of counts as Array<{ emoji: string; n: number | string }>) {
      const users = await trx('reactions')
        .select('user_id')
        .where({ message_id: r.messageId, emoji: c.emoji })
        .orderBy([{ column: 'created_at' }, { column: 'user_id' }])
        .limit(limits.maxListed);
      summary.push({
        emoji: c.emoji,
        count: Number(c.n),
        user_ids: users.map((u: { user_id: number }) => u.user_id),
      });
    }
    await trx('messages')
      .where({ id: r.messageId })
      .update({
        reactions: summary.length > 0 ? JSON.stringify(summary) : null,
        updated_at: nowSeconds(),
      });
    return true;
  });
}

export async function updateSource(
  db: Knex,
  id: number,
  m: { source: string; html: string; preview_pending: boolean },
): Promise<void> {
  await db('messages')
    .where({ id })
    .update({ ...m, updated_at: nowSeconds() });
}
