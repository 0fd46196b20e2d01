// The rooms contract: /api/rooms (served by the messages service, which owns rooms, their members
// and read markers next to the messages they guard; see docs/ARCHITECTURE.md#rooms).
import { z } from 'zod';
import { defineOperation, errorResponse, unauthorized } from './operations.js';
import { pathId, queryInteger, queryParams } from './fields.js';

export const ROOMS_MOUNT = '/api/rooms';
/** Room 1: the original's one global room, where every user is and `GET /api/messages` reads. */
export const GENERAL_ROOM_ID = 1;
export const MAX_ROOM_NAME_CHARS = 80;
export const MAX_ROOM_TOPIC_CHARS = 250;
export const MAX_ROOMS_PAGE = 1000;
export const DEFAULT_ROOMS_PAGE = 100;
/** Members a room lists; a private room holds no more. */
export const MAX_ROOM_MEMBERS = 1000;
/** Rooms a user may be a member of (the gateway joins them all on connect). */
export const MAX_ROOMS_PER_USER = 1000;
/** Unread counts stop here (the client shows "999+"): counting is bounded, whatever the backlog. */
export const MAX_UNREAD = 1000;
const MAX_15_DIGITS = 999999999999999;

// Same hidden-character rule as nicknames, shorter: names and topics are shown to everyone.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const LONE_SURROGATE = /\p{Cs}/u;

function text(max: number, description: string, allowEmpty: boolean) {
  return z
    .string({ error: 'must be a string' })
    .refine((v) => !LONE_SURROGATE.test(v), { error: 'must be valid Unicode', abort: true })
    .refine((v) => !CONTROL.test(v), {
      error: 'must not contain control or bidi-control characters',
      abort: true,
    })
    .transform((v) => v.normalize('NFC').trim())
    .refine((v) => allowEmpty || v.length > 0, { error: 'must not be empty', abort: true })
    .refine((v) => [...v].length <= max, { error: `must be at most ${max} characters` })
    .meta({ description: `${description}; at most ${max} characters, trimmed.` });
}

export const RoomCreate = z
  .object(
    {
      name: text(MAX_ROOM_NAME_CHARS, 'The room name, not blank', false),
      topic: text(MAX_ROOM_TOPIC_CHARS, 'What the room is about', true).optional(),
      private: z
        .boolean({ error: 'must be true or false' })
        .optional()
        .meta({ description: 'Private rooms are seen and read by their members only.' }),
    },
    { error: 'must be a JSON object' },
  )
  .meta({ id: 'RoomCreate', description: 'Other keys are ignored.' });
export type RoomCreate = z.output<typeof RoomCreate>;

export const DirectCreate = z
  .object(
    {
      user_id: z
        .int({ error: 'must be a user id' })
        .min(1, { error: 'must be a user id' })
        .max(MAX_15_DIGITS, { error: 'must be a user id' }),
    },
    { error: 'must be a JSON object' },
  )
  .meta({ id: 'DirectCreate', description: 'The other participant.' });

export const ReadMarker = z
  .object(
    {
      message_id: z
        .int({ error: 'must be a message id' })
        .min(1, { error: 'must be a message id' })
        .max(MAX_15_DIGITS, { error: 'must be a message id' }),
    },
    { error: 'must be a JSON object' },
  )
  .meta({ id: 'ReadMarker', description: 'The last message read; the marker never goes back.' });

export const Room = z
  .strictObject({
    id: z.int().positive(),
    name: z.string(),
    topic: z.string(),
    private: z.boolean(),
    direct: z.boolean().meta({ description: 'A direct message room: private, of two users.' }),
    created_by: z.int().nonnegative().meta({ description: 'Who created it (0: the platform).' }),
    created_at: z.int().nonnegative(),
    updated_at: z.int().nonnegative(),
    member: z.boolean().optional().meta({
      description: 'Whether the caller is a member (everyone is in general); with a token only.',
    }),
    unread: z
      .int()
      .nonnegative()
      .optional()
      .meta({
        description: `Others' messages among the first ${MAX_UNREAD} after the caller's read marker; members only.`,
      }),
    mentions: z
      .int()
      .nonnegative()
      .optional()
      .meta({ description: 'Unread messages that @mention the caller; members only.' }),
    last_read_id: z.int().nonnegative().optional().meta({ description: "The caller's marker." }),
    members: z
      .array(z.int().positive())
      .optional()
      .meta({
        description: `The members' user ids (at most ${MAX_ROOM_MEMBERS}); not for general, where everyone is.`,
      }),
    member_count: z.int().nonnegative().optional(),
    _links: z.strictObject({
      self: z.string().meta({ example: '/api/rooms/2' }),
      messages: z.string().meta({ example: '/api/messages?room_id=2' }),
    }),
  })
  .meta({
    id: 'Room',
    example: {
      id: 2,
      name: 'random',
      topic: 'anything goes',
      private: false,
      direct: false,
      created_by: 1,
      created_at: 1767225600,
      updated_at: 1767225600,
      _links: { self: '/api/rooms/2', messages: '/api/messages?room_id=2' },
    },
  });
export type Room = z.output<typeof Room>;

export const RoomList = z
  .strictObject({
    rooms: z.array(Room),
    next: z.string().optional().meta({ description: 'The next page, on a full page only.' }),
  })
  .meta({ id: 'RoomList' });

export const RoomListQuery = queryParams({
  after: queryInteger({
    min: 0,
    max: MAX_15_DIGITS,
    description: 'Keyset cursor: rooms with a greater id than this.',
  }).optional(),
  limit: queryInteger({
    min: 1,
    max: MAX_ROOMS_PAGE,
    description: `At most this many rooms (default ${DEFAULT_ROOMS_PAGE}); a full page links the next.`,
  }).optional(),
});

export const Memberships = z
  .strictObject({
    user_id: z.int().positive(),
    rooms: z.array(z.int().positive()).meta({
      description: `Every room the caller is a member of, general included (at most ${MAX_ROOMS_PER_USER + 1}).`,
    }),
  })
  .meta({ id: 'Memberships' });

export const RoomIdParams = z.object({ id: pathId('The room id.', 15) });
export const MemberParams = z.object({
  id: pathId('The room id.', 15),
  user_id: pathId('The user id.', 15),
});

const roomNotFound = errorResponse(
  'No room has this id, or it is private and the caller is not a member (the two are not told apart).',
  'room not found',
);
const badRoom = errorResponse(
  'A field is missing or invalid, or the body is not a well-formed JSON object.',
  'name must not be empty',
);

export const roomsApi = {
  listRooms: defineOperation({
    operationId: 'listRooms',
    method: 'get',
    mount: ROOMS_MOUNT,
    route: '/',
    tag: 'rooms',
    summary: "List the public rooms and the caller's rooms",
    description: 'By id; with a token, each room the caller is in carries unread and mentions.',
    security: 'optionalBearer',
    query: RoomListQuery,
    responses: {
      200: { description: 'The rooms.', schema: RoomList },
      400: errorResponse(
        'A query parameter is invalid.',
        'limit must be an integer from 1 to 1000',
      ),
      401: unauthorized,
    },
  }),
  createRoom: defineOperation({
    operationId: 'createRoom',
    method: 'post',
    mount: ROOMS_MOUNT,
    route: '/',
    tag: 'rooms',
    summary: 'Create a room (its creator is its first member)',
    security: 'bearer',
    body: RoomCreate,
    bodyExample: { name: 'random', topic: 'anything goes', private: false },
    responses: {
      201: {
        description: 'Created.',
        schema: Room,
        headers: {
          Location: { description: 'The new room.', required: true, example: '/api/rooms/2' },
        },
      },
      400: badRoom,
      401: unauthorized,
      409: errorResponse('The caller is in too many rooms.', 'too many rooms'),
    },
  }),
  openDirect: defineOperation({
    operationId: 'openDirect',
    method: 'post',
    mount: ROOMS_MOUNT,
    route: '/direct',
    tag: 'rooms',
    summary: 'Open the direct-message room with a user',
    description: 'The same room every time for the same two users.',
    security: 'bearer',
    body: DirectCreate,
    bodyExample: { user_id: 2 },
    responses: {
      200: { description: 'It existed.', schema: Room },
      201: {
        description: 'Created.',
        schema: Room,
        headers: {
          Location: { description: 'The room.', required: true, example: '/api/rooms/3' },
        },
      },
      400: errorResponse(
        'The user id is missing or invalid, or it is the caller.',
        'user_id must be a user id',
      ),
      401: unauthorized,
      404: errorResponse('No user has this id.', 'user not found'),
      409: errorResponse('Either user is in too many rooms.', 'too many rooms'),
    },
  }),
  listMemberships: defineOperation({
    operationId: 'listMemberships',
    method: 'get',
    mount: ROOMS_MOUNT,
    route: '/memberships',
    tag: 'rooms',
    summary: "The ids of the caller's rooms (the Socket.IO gateway joins them)",
    security: 'bearer',
    responses: {
      200: { description: 'The rooms.', schema: Memberships },
      401: unauthorized,
    },
  }),
  getRoom: defineOperation({
    operationId: 'getRoom',
    method: 'get',
    mount: ROOMS_MOUNT,
    route: '/:id',
    tag: 'rooms',
    summary: 'Get a room and its members',
    security: 'optionalBearer',
    params: RoomIdParams,
    responses: {
      200: { description: 'The room.', schema: Room },
      401: unauthorized,
      404: roomNotFound,
    },
  }),
  addMember: defineOperation({
    operationId: 'addMember',
    method: 'put',
    mount: ROOMS_MOUNT,
    route: '/:id/members/:user_id',
    tag: 'rooms',
    summary: 'Join a public room, or add someone to a room you are in',
    description:
      'Anyone may join a public room; only members add others (the invitation to a private room). A direct room takes nobody else.',
    security: 'bearer',
    params: MemberParams,
    responses: {
      204: { description: 'A member (already, or now).' },
      401: unauthorized,
      403: errorResponse(
        'Only members add others; nobody joins a direct room.',
        'only members add others',
      ),
      404: errorResponse('No such room (for the caller) or user.', 'room not found'),
      409: errorResponse('The room or the user is full.', 'too many members'),
    },
  }),
  removeMember: defineOperation({
    operationId: 'removeMember',
    method: 'delete',
    mount: ROOMS_MOUNT,
    route: '/:id/members/:user_id',
    tag: 'rooms',
    summary: 'Leave a room, or remove someone from a room you created',
    description: 'The removed member stops receiving its events at once. Nobody leaves general.',
    security: 'bearer',
    params: MemberParams,
    responses: {
      204: { description: 'Not a member (any more).' },
      401: unauthorized,
      403: errorResponse(
        "Only a room's creator removes others; nobody leaves general.",
        'only the creator removes others',
      ),
      404: roomNotFound,
    },
  }),
  markRead: defineOperation({
    operationId: 'markRead',
    method: 'put',
    mount: ROOMS_MOUNT,
    route: '/:id/read',
    tag: 'rooms',
    summary: "Move the caller's read marker",
    security: 'bearer',
    params: RoomIdParams,
    body: ReadMarker,
    bodyExample: { message_id: 42 },
    responses: {
      204: { description: 'Marked (a marker never goes back).' },
      400: errorResponse(
        'The message id is missing or invalid.',
        'message_id must be a message id',
      ),
      401: unauthorized,
      403: errorResponse('The caller is not a member.', 'not a member'),
      404: errorResponse(
        'No such room for the caller, or no such message in it.',
        'room not found',
      ),
    },
  }),
};
