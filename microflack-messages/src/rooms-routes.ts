// The /api/rooms routes: create and list rooms, direct rooms, members, read markers. Membership
// changes reach the Socket.IO gateway as socketsJoin/socketsLeave on the member's sockets, so a
// removed member's sockets leave the room's Socket.IO room before the 204 is answered.
import { Router } from 'express';
import {
  doNotKeep,
  HttpError,
  logger,
  roomSocketRoom,
  userSocketRoom,
  type Auth,
  type Events,
  type Knex,
  type ResponseCache,
} from '@microflack/common';
import {
  DEFAULT_ROOMS_PAGE,
  DirectCreate,
  GENERAL_ROOM_ID,
  MAX_ROOM_MEMBERS,
  MAX_ROOMS_PER_USER,
  MemberParams,
  parseBody,
  parseParams,
  parseQuery,
  ReadMarker,
  RoomCreate,
  RoomIdParams,
  RoomListQuery,
  roomsApi as api,
  type Room,
} from '@microflack/common/api';
import type { Directory } from './directory.js';
import {
  addMember,
  directKey,
  findDirect,
  findMembership,
  findRoom,
  insertRoom,
  isMember,
  isPrivate,
  listRooms,
  markRead,
  memberCount,
  membersOf,
  membershipsOf,
  mentionCount,
  readableRoom,
  removeMember,
  roomCountOf,
  roomJson,
  roomUrl,
  unreadCount,
  type RoomRow,
} from './rooms.js';
import { callerId, callerScope } from './routes.js';

const log = logger.child({ module: 'rooms' });
const ROOM_NOT_FOUND = 'room not found';

export interface RoomsDeps {
  db: Knex;
  auth: Auth;
  events: Events;
  directory: Directory;
  /** Whole answers kept in memory, with their ETags. */
  answers: ResponseCache;
}

function requireCaller(userId: number | undefined): number {
  if (userId === undefined) throw new HttpError(401, 'authentication required');
  return userId;
}

export function roomsRouter({ db, auth, events, directory, answers }: RoomsDeps): Router {
  const router = Router();

  /** Who hears of a room itself changing: its members (general and public rooms: everyone). */
  function announceRoom(room: RoomRow, also: number[] = []): Promise<void> {
    const json = roomJson(room);
    if (!isPrivate(room)) return events.emitUpdatedModel('Room', json);
    return events.emitUpdatedModel('Room', json, [
      roomSocketRoom(room.id),
      ...also.map((u) => userSocketRoom(u)),
    ]);
  }

  async function join(roomId: number, userId: number): Promise<void> {
    await addMember(db, roomId, userId);
    events.socketsJoin(userSocketRoom(userId), roomSocketRoom(roomId));
  }

  /** The user's nickname identity, or undefined when users cannot tell now (mentions left out). */
  async function callerKey(userId: number): Promise<string | null | undefined> {
    try {
      return await directory.nicknameKeyOf(userId);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'mentions not counted: users unavailable');
      return undefined;
    }
  }

  router.get(
    api.listRooms.route,
    auth.tokenOptional,
    answers.keep(callerScope),
    async (req, res) => {
      const query = parseQuery(RoomListQuery, req.query);
      const userId = callerId(req);
      const limit = query.limit ?? DEFAULT_ROOMS_PAGE;
      const rows = await listRooms(db, userId, query.after ?? 0, limit);
      const key = userId !== undefined && rows.length > 0 ? await callerKey(userId) : undefined;
      // Mentions left out for now: not an answer to give again.
      if (userId !== undefined && rows.length > 0 && key === undefined) doNotKeep(res);
      const rooms: Room[] = [];
      for (const row of rows) {
        let extra: Partial<Room> = {};
        if (userId !== undefined) {
          const member = row.id === GENERAL_ROOM_ID || row.member !== null;
          extra = { member };
          if (member) {
            const lastRead = Number(row.last_read_id ?? 0);
            extra.last_read_id = lastRead;
            extra.unread = await unreadCount(db, row.id, userId, lastRead);
            if (key) extra.mentions = await mentionCount(db, row.id, key, lastRead);
          }
        }
        rooms.push(roomJson(row, extra));
      }
      const lastRow = rows[rows.length - 1];
      const next =
        rows.length === limit && lastRow
          ? `/api/rooms?after=${lastRow.id}&limit=${limit}`
          : undefined;
      res.json(next ? { rooms, next } : { rooms });
    },
  );

  router.post(api.createRoom.route, auth.tokenRequired, async (req, res) => {
    const body = parseBody(RoomCreate, req.body);
    const userId = requireCaller(callerId(req));
    if ((await roomCountOf(db, userId)) >= MAX_ROOMS_PER_USER) {
      throw new HttpError(409, 'too many rooms');
    }
    const room = await insertRoom(db, {
      name: body.name,
      topic: body.topic ?? '',
      private: body.private ?? false,
      created_by: userId,
    });
    await join(room.id, userId);
    const json = roomJson(room, { member: true, members: [userId], member_count: 1 });
    // Announced before the answer, as every change is (Events.emitUpdatedModel).
    await announceRoom(room, [userId]);
    res.status(201).location(roomUrl(room.id)).json(json);
  });

  router.post(api.openDirect.route, auth.tokenRequired, async (req, res) => {
    const { user_id: other } = parseBody(DirectCreate, req.body);
    const userId = requireCaller(callerId(req));
    if (other === userId) throw new HttpError(400, 'user_id must be another user');
    const existing = await findDirect(db, userId, other);
    const pair = [Math.min(userId, other), Math.max(userId, other)];
    if (existing) {
      // Both are members again, whoever left it.
      for (const u of pair) await join(existing.id, u as number);
      res.json(roomJson(existing, { member: true, members: pair as number[], member_count: 2 }));
      return;
    }
    if ((await directory.nicknameKeyOf(other)) === null) throw new HttpError(404, 'user not found');
    for (const u of pair) {
      if ((await roomCountOf(db, u as number)) >= MAX_ROOMS_PER_USER) {
        throw new HttpError(409, 'too many rooms');
      }
    }
    let room: RoomRow;
    try {
      room = await insertRoom(db, {
        name: `direct ${pair.join(' ')}`,
        topic: '',
        private: true,
        created_by: userId,
        direct_key: directKey(userId, other),
      });
    } catch (err) {
      // Both opened it at once: the other request made it.
      const made = await findDirect(db, userId, other);
      if (!made) throw err;
      room = made;
    }
    for (const u of pair) await join(room.id, u as number);
    await announceRoom(room, pair as number[]);
    res
      .status(201)
      .location(roomUrl(room.id))
      .json(roomJson(room, { member: true, members: pair as number[], member_count: 2 }));
  });

  router.get(
    api.listMemberships.route,
    auth.tokenRequired,
    answers.keep(callerScope),
    async (req, res) => {
      const userId = requireCaller(callerId(req));
      const rooms = await membershipsOf(db, userId, MAX_ROOMS_PER_USER);
      res.json({ user_id: userId, rooms: [GENERAL_ROOM_ID, ...rooms] });
    },
  );

  router.get(api.getRoom.route, auth.tokenOptional, answers.keep(callerScope), async (req, res) => {
    const { id } = parseParams(RoomIdParams, req.params, ROOM_NOT_FOUND);
    const userId = callerId(req);
    const room = await readableRoom(db, id, userId);
    if (!room) throw new HttpError(404, ROOM_NOT_FOUND);
    const extra: Partial<Room> = {};
    if (userId !== undefined) extra.member = await isMember(db, id, userId);
    if (id !== GENERAL_ROOM_ID) {
      const { members, count } = await membersOf(db, id);
      extra.members = members;
      extra.member_count = count;
    }
    res.json(roomJson(room, extra));
  });

  router.put(api.addMember.route, auth.tokenRequired, async (req, res) => {
    const { id, user_id: target } = parseParams(MemberParams, req.params, ROOM_NOT_FOUND);
    const userId = requireCaller(callerId(req));
    const room = await readableRoom(db, id, userId);
    if (!room) throw new HttpError(404, ROOM_NOT_FOUND);
    if (id === GENERAL_ROOM_ID) {
      // Everyone is in general already.
      if ((await directory.nicknameKeyOf(target)) === null)
        throw new HttpError(404, 'user not found');
      res.status(204).end();
      return;
    }
    if (room.direct_key !== null) throw new HttpError(403, 'nobody joins a direct room');
    const callerIsMember = await isMember(db, id, userId);
    if (target !== userId && !callerIsMember) throw new HttpError(403, 'only members add others');
    if (await findMembership(db, id, target)) {
      res.status(204).end();
      return;
    }
    if (target !== userId && (await directory.nicknameKeyOf(target)) === null) {
      throw new HttpError(404, 'user not found');
    }
    if ((await memberCount(db, id)) >= MAX_ROOM_MEMBERS && isPrivate(room)) {
      throw new HttpError(409, 'too many members');
    }
    if ((await roomCountOf(db, target)) >= MAX_ROOMS_PER_USER) {
      throw new HttpError(409, 'too many rooms');
    }
    await join(id, target);
    await announceRoom(room, [target]);
    res.status(204).end();
  });

  router.delete(api.removeMember.route, auth.tokenRequired, async (req, res) => {
    const { id, user_id: target } = parseParams(MemberParams, req.params, ROOM_NOT_FOUND);
    const userId = requireCaller(callerId(req));
    const room = await readableRoom(db, id, userId);
    if (!room) throw new HttpError(404, ROOM_NOT_FOUND);
    if (id === GENERAL_ROOM_ID) throw new HttpError(403, 'nobody leaves general');
    if (target !== userId && room.created_by !== userId) {
      throw new HttpError(403, 'only the creator removes others');
    }
    const removed = await removeMember(db, id, target);
    // Published before answering: the member's sockets stop hearing the room at once (the gateway also
    // checks again when it joins a socket, see gateway.ts).
    events.socketsLeave(userSocketRoom(target), roomSocketRoom(id));
    if (removed) {
      await Promise.all([
        announceRoom(room),
        // The removed member hears of it on its own sockets only.
        events.emitUpdatedModel('Room', roomJson(room, { member: false }), [
          userSocketRoom(target),
        ]),
      ]);
    }
    res.status(204).end();
  });

  router.put(api.markRead.route, auth.tokenRequired, async (req, res) => {
    const { id } = parseParams(RoomIdParams, req.params, ROOM_NOT_FOUND);
    const userId = requireCaller(callerId(req));
    const room = await findRoom(db, id);
    const member = room !== undefined && (await isMember(db, id, userId));
    if (!room || (isPrivate(room) && !member)) throw new HttpError(404, ROOM_NOT_FOUND);
    if (!member) throw new HttpError(403, 'not a member');
    const { message_id: messageId } = parseBody(ReadMarker, req.body);
    const message = await db('messages').where({ id: messageId, room_id: id }).first('id');
    if (!message) throw new HttpError(404, 'message not found in this room');
    await markRead(db, id, userId, messageId);
    res.status(204).end();
  });

  return router;
}
