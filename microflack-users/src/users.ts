// The users table: rows, their JSON, and the queries the routes and the sweep need.
import { isUniqueViolation, type Knex, type User } from '@microflack/common';
import { nicknameKey } from '@microflack/common/api';

export interface UserRow {
  id: number;
  created_at: number;
  updated_at: number;
  last_seen_at: number;
  nickname: string;
  /** The nickname's identity (nicknameKey), unique. */
  nickname_key: string;
  password_hash: string;
  online: number | boolean;
}

/** A user as the API answers it and updated_model carries it: the contract's User. */
export type UserJson = User;

export function now(): number {
  return Math.floor(Date.now() / 1000);
}

// The hash never leaves this function's input.
export function toJson(u: Omit<UserRow, 'password_hash'>): UserJson {
  return {
    id: Number(u.id),
    created_at: Number(u.created_at),
    updated_at: Number(u.updated_at),
    nickname: u.nickname,
    last_seen_at: Number(u.last_seen_at),
    online: Boolean(Number(u.online)),
    _links: {
      self: `/api/users/${u.id}`,
      messages: `/api/messages?user_id=${u.id}`,
      tokens: '/api/tokens',
    },
  };
}

export async function findUserById(db: Knex, id: number): Promise<UserRow | undefined> {
  return db<UserRow>('users').where({ id }).first();
}

/** The user a nickname names: compared by identity (nicknameKey), not by the exact string. */
export async function findUserByNickname(db: Knex, nickname: string): Promise<UserRow | undefined> {
  return db<UserRow>('users')
    .where({ nickname_key: nicknameKey(nickname) })
    .first();
}

export interface UserFilter {
  online?: boolean;
  updatedSince?: number;
}

/** A place in the list's (updated_at, nickname) order. */
export interface UserCursor {
  updatedAt: number;
  nickname: string;
}

/** Which part of the list: from the oldest change (after a cursor), or back from the newest. */
export type UserPage =
  | { direction: 'forward'; after?: UserCursor; limit: number }
  | { direction: 'backward'; before?: UserCursor; limit: number };

/** A listed user: which version of its row is current, and its place in the order. */
export interface UserKey {
  id: number;
  version: number;
  updated_at: number;
  nickname: string;
}

/**
 * The list, as keys only, in the list's (updated_at, nickname) order; the rows come from
 * findUsersByIds for the versions not already serialised.
 */
export async function listUserKeys(
  db: Knex,
  filter: UserFilter,
  page: UserPage,
): Promise<UserKey[]> {
  // Backward pages read the index from the newest end and are turned round: every page is in the
  // list's order.
  const order = page.direction === 'forward' ? 'asc' : 'desc';
  const q = db('users')
    .select<UserKey[]>('id', 'version', 'updated_at', 'nickname')
    .orderBy([
      { column: 'updated_at', order },
      { column: 'nickname', order },
    ])
    .limit(page.limit);
  if (filter.online !== undefined) q.where({ online: filter.online ? 1 : 0 });
  if (filter.updatedSince !== undefined) q.where('updated_at', '>', filter.updatedSince);
  const cursor = page.direction === 'forward' ? page.after : page.before;
  if (cursor) {
    const op = page.direction === 'forward' ? '>' : '<';
    q.where((w) =>
      w
        .where('updated_at', op, cursor.updatedAt)
        .orWhere((t) =>
          t.where('updated_at', cursor.updatedAt).andWhere('nickname', op, cursor.nickname),
        ),
    );
  }
  const rows = await q;
  if (page.direction === 'backward') rows.reverse();
  // MariaDB and SQLite both answer numbers here, but the cache compares with ===.
  return rows.map((r) => ({
    id: Number(r.id),
    version: Number(r.version),
    updated_at: Number(r.updated_at),
    nickname: r.nickname,
  }));
}

// Bound on the ids in one `IN (...)` (SQLite allows 32766 variables).
const IDS_PER_QUERY = 1000;

/** A row as the list needs it: never the password hash. */
export type ListedUser = Omit<UserRow, 'password_hash'> & { version: number };

/** The rows with these ids, each with the version it is read at (which may be newer than listed). */
export async function findUsersByIds(db: Knex, ids: number[]): Promise<ListedUser[]> {
  const out: ListedUser[] = [];
  for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
    const rows = await db('users')
      .select<ListedUser[]>(
        'id',
        'created_at',
        'updated_at',
        'last_seen_at',
        'nickname',
        'online',
        'version',
      )
      .whereIn('id', ids.slice(i, i + IDS_PER_QUERY));
    out.push(...rows);
  }
  return out;
}

export class NicknameTakenError extends Error {
  override name = 'NicknameTakenError';
}

/** Inserts a user; a taken nickname (even in a race) is a NicknameTakenError. */
export async function insertUser(
  db: Knex,
  nickname: string,
  passwordHash: string,
): Promise<UserRow> {
  const t = now();
  let id: number;
  try {
    const ids = await db('users').insert({
      created_at: t,
      updated_at: t,
      last_seen_at: t,
      nickname,
      nickname_key: nicknameKey(nickname),
      password_hash: passwordHash,
      online: 0,
    });
    id = Number(ids[0]);
  } catch (err) {
    if (isUniqueViolation(err)) throw new NicknameTakenError(nickname);
    throw err;
  }
  return (await findUserById(db, id)) as UserRow;
}

export async function updateUser(
  db: Knex,
  id: number,
  change: { nickname?: string; password_hash?: string },
): Promise<UserRow | undefined> {
  if (change.nickname !== undefined || change.password_hash !== undefined) {
    try {
      const key =
        change.nickname === undefined ? {} : { nickname_key: nicknameKey(change.nickname) };
      await db('users')
        .where({ id })
        .update({ ...change, ...key, updated_at: now() });
    } catch (err) {
      if (isUniqueViolation(err)) throw new NicknameTakenError(change.nickname ?? '');
      throw err;
    }
  }
  return findUserById(db, id);
}

/**
 * Records that the user was just seen. Returns the row as it is now and whether it went online,
 * which is when an event is due; a mere last_seen_at refresh changes neither updated_at nor emits.
 */
export async function markSeen(
  db: Knex,
  user: UserRow,
): Promise<{ user: UserRow; changed: boolean }> {
  const t = now();
  if (Number(user.online)) {
    if (Number(user.last_seen_at) >= t) return { user, changed: false };
    await db('users').where({ id: user.id }).update({ last_seen_at: t });
    return { user: { ...user, last_seen_at: t }, changed: false };
  }
  // Guarded on online = 0 so that of two racing requests only one reports the change.
  const n = await db('users')
    .where({ id: user.id, online: 0 })
    .update({ online: 1, last_seen_at: t, updated_at: t });
  const fresh = (await findUserById(db, user.id)) ?? user;
  return { user: fresh, changed: n > 0 };
}

export async function markOffline(
  db: Knex,
  user: UserRow,
): Promise<{ user: UserRow; changed: boolean }> {
  const t = now();
  const n = await db('users')
    .where({ id: user.id, online: 1 })
    .update({ online: 0, last_seen_at: t, updated_at: t });
  if (n === 0) await db('users').where({ id: user.id }).update({ last_seen_at: t });
  const fresh = (await findUserById(db, user.id)) ?? user;
  return { user: fresh, changed: n > 0 };
}

/** Marks offline everyone online but not seen since `cutoff`; returns the rows it changed. */
export async function markStaleUsersOffline(db: Knex, cutoff: number): Promise<UserRow[]> {
  const stale = await db<UserRow>('users')
    .where({ online: 1 })
    .andWhere('last_seen_at', '<', cutoff)
    .select('id');
  if (stale.length === 0) return [];
  const ids = stale.map((r) => r.id);
  const t = now();
  // The same conditions again: a user seen between the select and here stays online.
  await db('users')
    .whereIn('id', ids)
    .andWhere({ online: 1 })
    .andWhere('last_seen_at', '<', cutoff)
    .update({ online: 0, updated_at: t });
  return db<UserRow>('users').whereIn('id', ids).andWhere({ online: 0, updated_at: t });
}
