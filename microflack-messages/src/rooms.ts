// Rooms, members and read markers: queries and the JSON a room is answered with. Every list is
// keyset-paged on an index; every count is bounded.
import type { Knex, Room } from '@microflack/common';
import { GENERAL_ROOM_ID, MAX_ROOM_MEMBERS, MAX_UNREAD, ROOMS_MOUNT } from '@microflack/common/api';
import { nowSeconds } from './messages.js';

export interface RoomRow {
  id: number;
  name: string;
  topic: string;
  private: boolean | number;
  direct_key: string | null;
  created_by: number;
  created_at: number;
  updated_at: number;
}

const ROOM_COLUMNS = [
  'id',
  'name',
  'topic',
  'private',
  'direct_key',
  'created_by',
  'created_at',
  'updated_at',
] as const;

export function isPrivate(room: RoomRow): boolean {
  return Boolean(room.private);
}

export function roomUrl(id: number): string {
  return `${ROOMS_MOUNT}/${id}`;
}

export function roomJson(room: RoomRow, extra: Partial<Room> = {}): Room {
  return {
    id: room.id,
    name: room.name,
    topic: room.topic,
    private: isPrivate(room),
    direct: room.direct_key !== null,
    created_by: room.created_by,
    created_at: room.created_at,
    updated_at: room.updated_at,
    ...extra,
    _links: { self: roomUrl(room.id), messages: `/api/messages?room_id=${room.id}` },
  };
}

export async function findRoom(db: Knex, id: number): Promise<RoomRow | undefined> {
  return db<RoomRow>('rooms')
    .where({ id })
    .first(...ROOM_COLUMNS);
}

export interface Membership {
  room_id: number;
  user_id: number;
  last_read_id: number;
}

export async function findMembership(
  db: Knex,
  roomId: number,
  userId: number,
): Promise<Membership | undefined> {
  return db<Membership>('room_members')
    .where({ room_id: roomId, user_id: userId })
    .first('room_id', 'user_id', 'last_read_id');
}

/** Whether this user is a member: everyone signed in is in general. */
export async function isMember(
  db: Knex,
  roomId: number,
  userId: number | undefined,
): Promise<boolean> {
  if (userId === undefined) return false;
  if (roomId === GENERAL_ROOM_ID) return true;
  return (await findMembership(db, roomId, userId)) !== undefined;
}

/** The room if this caller may read it (public, or private and a member), else undefined. */
export async function readableRoom(
  db: Knex,
  roomId: number,
  userId: number | undefined,
): Promise<RoomRow | undefined> {
  const room = await findRoom(db, roomId);
  if (!room) return undefined;
  if (!isPrivate(room)) return room;
  return (await isMember(db, roomId, userId)) ? room : undefined;
}

/**
 * A page of the rooms this caller sees: the public ones and those it is a member of, by id.
 * Uses the primary key (range on id) with the (private, id) and (user_id, room_id) indexes.
 */
export async function listRooms(
  db: Knex,
  userId: number | undefined,
  after: number,
  limit: number,
): Promise<Array<RoomRow & { member: number | null; last_read_id: number | null }>> {
  const query = db('rooms as r')
    .select(...ROOM_COLUMNS.map((c) => `r.${c}`), 'm.user_id as member', 'm.last_read_id')
    .where('r.id', '>', after)
    .orderBy('r.id', 'asc')
    .limit(limit);
  if (userId === undefined) {
    query.leftJoin('room_members as m', (j) => j.on('m.room_id', 'r.id').andOnVal('m.user_id', -1));
    query.andWhere('r.private', false);
  } else {
    query.leftJoin('room_members as m', (j) =>
      j.on('m.room_id', 'r.id').andOnVal('m.user_id', userId),
    );
    query.andWhere((w) => w.where('r.private', false).orWhereNotNull('m.user_id'));
  }
  return query;
}

/**
 * Others' messages among the first MAX_UNREAD after `lastReadId`, on the (room_id, id) index: at
 * most MAX_UNREAD rows are read whoever wrote them (a caller with a million messages of their own
 * after the marker is not a million-row scan).
 */
export async function unreadCount(
  db: Knex,
  roomId: number,
  userId: number,
  lastReadId: number,
): Promise<number> {
  const inner = db('messages')
    .select('user_id', 'deleted')
    .where('room_id', roomId)
    .andWhere('id', '>', lastReadId)
    .orderBy('id', 'asc')
    .limit(MAX_UNREAD);
  const [row] = (await db
    .count({ n: '*' })
    .from(inner.as('u'))
    .whereNot('u.user_id', userId)
    .andWhere('u.deleted', false)) as Array<{ n: number | string }>;
  return Number(row?.n ?? 0);
}

/** Mentions of this nickname after `lastReadId` in the room, on the mentions primary key. */
export async function mentionCount(
  db: Knex,
  roomId: number,
  key: string,
  lastReadId: number,
): Promise<number> {
  const inner = db('mentions')
    .select('message_id')
    .where({ nickname_key: key, room_id: roomId })
    .andWhere('message_id', '>', lastReadId)
    .limit(MAX_UNREAD);
  const [row] = (await db.count({ n: '*' }).from(inner.as('u'))) as Array<{ n: number | string }>;
  return Number(row?.n ?? 0);
}

/** The first MAX_ROOM_MEMBERS members by user id, and how many there are. */
export async function membersOf(
  db: Knex,
  roomId: number,
): Promise<{ members: number[]; count: number }> {
  const rows = await db('room_members')
    .select('user_id')
    .where('room_id', roomId)
    .orderBy('user_id')
    .limit(MAX_ROOM_MEMBERS);
  const [c] = await db('room_members').where('room_id', roomId).count({ n: '*' });
  return { members: rows.map((r: { user_id: number }) => r.user_id), count: Number(c?.n ?? 0) };
}

export async function memberCount(db: Knex, roomId: number): Promise<number> {
  const [c] = await db('room_members').where('room_id', roomId).count({ n: '*' });
  return Number(c?.n ?? 0);
}

/** Rooms this user is a member of besides general (general's rows only hold read markers). */
export async function roomCountOf(db: Knex, userId: number): Promise<number> {
  const [c] = await db('room_members')
    .where('user_id', userId)
    .andWhereNot('room_id', GENERAL_ROOM_ID)
    .count({ n: '*' });
  return Number(c?.n ?? 0);
}

export async function membershipsOf(db: Knex, userId: number, limit: number): Promise<number[]> {
  const rows = await db('room_members')
    .select('room_id')
    .where('user_id', userId)
    .andWhereNot('room_id', GENERAL_ROOM_ID)
    .orderBy('room_id')
    .limit(limit);
  return rows.map((r: { room_id: number }) => r.room_id);
}

/** The room's newest message id (0 when empty): where a new member's marker starts. */
export async function lastMessageId(db: Knex, roomId: number): Promise<number> {
  const row = await db('messages').where('room_id', roomId).max({ id: 'id' }).first();
  return Number(row?.id ?? 0);
}

/** Adds the member (a member already stays as it was); a new member has read everything so far. */
export async function addMember(db: Knex, roomId: number, userId: number): Promise<void> {
  const lastRead = await lastMessageId(db, roomId);
  await db('room_members')
    .insert({ room_id: roomId, user_id: userId, joined_at: nowSeconds(), last_read_id: lastRead })
    .onConflict(['room_id', 'user_id'])
    .ignore();
}

export async function removeMember(db: Knex, roomId: number, userId: number): Promise<boolean> {
  const n = await db('room_members').where({ room_id: roomId, user_id: userId }).delete();
  return n > 0;
}

export async function insertRoom(
  db: Knex,
  r: { name: string; topic: string; private: boolean; created_by: number; direct_key?: string },
): Promise<RoomRow> {
  const now = nowSeconds();
  const row = {
    name: r.name,
    topic: r.topic,
    private: r.private,
    direct_key: r.direct_key ?? null,
    created_by: r.created_by,
    created_at: now,
    updated_at: now,
  };
  const [id] = await db('rooms').insert(row);
  return { id: Number(id), ...row };
}

export function directKey(a: number, b: number): string {
  return a < b ? `${a}:${b}` : `${b}:${a}`;
}

export async function findDirect(db: Knex, a: number, b: number): Promise<RoomRow | undefined> {
  return db<RoomRow>('rooms')
    .where({ direct_key: directKey(a, b) })
    .first(...ROOM_COLUMNS);
}

/** Moves the marker forward only; general's marker row is made on first use. */
export async function markRead(
  db: Knex,
  roomId: number,
  userId: number,
  messageId: number,
): Promise<void> {
  if (roomId === GENERAL_ROOM_ID) {
    await db('room_members')
      .insert({ room_id: roomId, user_id: userId, joined_at: nowSeconds(), last_read_id: 0 })
      .onConflict(['room_id', 'user_id'])
      .ignore();
  }
  await db('room_members')
    .where({ room_id: roomId, user_id: userId })
    .andWhere('last_read_id', '<', messageId)
    .update({ last_read_id: messageId });
}
