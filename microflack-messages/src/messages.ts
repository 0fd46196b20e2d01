// The messages table: queries and the JSON a message is answered with.
import type { Knex } from '@microflack/common';
import type { Message } from '@microflack/common/api';

export interface MessageRow {
  id: number;
  created_at: number;
  updated_at: number;
  source: string;
  html: string;
  user_id: number;
}

/** A message as the API answers it: the contract's Message. */
export type MessageJson = Message;

// Only what the JSON needs: the list is the hot path (every client polls it).
const COLUMNS = ['id', 'created_at', 'updated_at', 'source', 'html', 'user_id'] as const;

export const SECONDS_PER_DAY = 24 * 60 * 60;

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
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
    _links: { self: messageUrl(m.id), user: `/api/users/${m.user_id}` },
  };
}

export async function findMessage(db: Knex, id: number): Promise<MessageRow | undefined> {
  return db<MessageRow>('messages')
    .where({ id })
    .first(...COLUMNS);
}

export interface ListQuery {
  since: number;
  userId?: number;
  limit?: number;
  /** Keyset cursor: the (updated_at, id) of the last message already seen. */
  after?: { updatedAt: number; id: number };
}

/** A listed message: where it sorts, and which version of it is current. */
export interface MessageKey {
  id: number;
  updated_at: number;
  version: number;
}

/**
 * The list, as keys only: answered from the (updated_at, id, version) or (user_id, updated_at, id,
 * version) index alone, without reading the rows. The rows come from findMessagesByIds, for the
 * versions not already serialised.
 */
export async function listMessageKeys(db: Knex, q: ListQuery): Promise<MessageKey[]> {
  const query = db<MessageKey>('messages')
    .select('id', 'updated_at', 'version')
    .where('updated_at', '>=', q.since)
    .orderBy([
      { column: 'updated_at', order: 'asc' },
      { column: 'id', order: 'asc' },
    ]);
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
  return query;
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

export async function insertMessage(
  db: Knex,
  m: { source: string; html: string; user_id: number; preview_pending: boolean },
): Promise<MessageRow> {
  const now = nowSeconds();
  const [id] = await db('messages').insert({ ...m, created_at: now, updated_at: now });
  return {
    id: Number(id),
    created_at: now,
    updated_at: now,
    source: m.source,
    html: m.html,
    user_id: m.user_id,
  };
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
