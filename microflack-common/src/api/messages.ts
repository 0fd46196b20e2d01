// The messages service's contract: /api/messages.
import { z } from 'zod';
import { IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_HEADER } from '../contract/constants.js';
import { defineOperation, errorResponse, unauthorized } from './operations.js';
import { pathId, queryInteger, queryParams } from './fields.js';

export const MESSAGES_MOUNT = '/api/messages';
export const MAX_SOURCE_CHARS = 4000;
export const MAX_PAGE_SIZE = 1000;
const MAX_15_DIGITS = 999999999999999;

export const MessageSource = z
  .object(
    {
      room_id: z
        .int({ error: 'must be a room id' })
        .min(1, { error: 'must be a room id' })
        .max(MAX_15_DIGITS, { error: 'must be a room id' })
        .optional()
        .meta({ description: 'The room to post in (default 1, general); a member posts.' }),
      source: z
        .string({ error: 'must be a string' })
        .refine((s) => s.trim().length > 0, { error: 'must not be empty', abort: true })
        .max(MAX_SOURCE_CHARS, { error: `must be at most ${MAX_SOURCE_CHARS} characters` })
        .meta({
          description: `Markdown, not blank, at most ${MAX_SOURCE_CHARS} characters (UTF-16 code units). Rendered to sanitised HTML; links get previews.`,
          example: 'Hello, **world**: https://example.com',
        }),
    },
    { error: 'must be a JSON object' },
  )
  .meta({
    id: 'MessageSource',
    description: 'Other keys are ignored (room_id too, on an edit: a message stays in its room).',
  });

/**
 * A poster's key for one post (a UUID will do): a post sent again with the same key, by the same
 * user, makes no second message and is answered with the first one's. What makes retries of a post
 * safe, for clients, the Socket.IO gateway and HAProxy alike.
 */
export { IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_HEADER };
export const IDEMPOTENCY_KEY_ERROR =
  "Idempotency-Key must be 1 to 64 letters, digits, '-', '_', '.' or ':'";
export const IDEMPOTENCY_KEY_REUSED_ERROR =
  'this Idempotency-Key was used for another message: use a new key for each post';
/** On the answer to a post sent again: the message was made by an earlier post with its key. */
export const IDEMPOTENT_REPLAYED_HEADER = 'idempotent-replayed';

export const CreateMessageHeaders = z.object({
  [IDEMPOTENCY_KEY_HEADER]: z.string().regex(IDEMPOTENCY_KEY).optional().meta({
    description:
      "1 to 64 letters, digits, '-', '_', '.' or ':', chosen by the poster for this one post (a UUID). The same user sending the same key again with the same source and room gets the message the first post made (201, `Idempotent-Replayed: true`); with another source or room, 422. Nothing is posted twice. Makes a retry after a lost answer safe.",
    example: '8e03978e-40d5-43e8-bc93-6894a57f9324',
  }),
});

/** The most reactions one message lists per emoji (the count is always exact). */
export const MAX_REACTORS_LISTED = 50;
/** The most different emoji one message takes. */
export const MAX_EMOJI_PER_MESSAGE = 20;

export const Reaction = z
  .strictObject({
    emoji: z.string(),
    count: z.int().positive(),
    user_ids: z.array(z.int().positive()).meta({
      description: `Who reacted, first ones first (at most ${MAX_REACTORS_LISTED}).`,
    }),
  })
  .meta({ id: 'Reaction' });
export type Reaction = z.output<typeof Reaction>;

export const Message = z
  .strictObject({
    id: z.int().positive(),
    created_at: z.int().meta({ description: 'Unix time (seconds).' }),
    updated_at: z.int().meta({ description: 'Unix time (seconds) of the last edit or preview.' }),
    source: z.string().meta({ description: 'As written (Markdown).' }),
    html: z
      .string()
      .meta({ description: 'The source rendered and sanitised, with link previews.' }),
    user_id: z.int().positive(),
    room_id: z.int().positive().meta({ description: 'Its room (1: general).' }),
    deleted: z.literal(true).optional().meta({
      description: 'A tombstone: its author deleted it; source and html are empty.',
    }),
    reactions: z.array(Reaction).optional().meta({ description: 'Only when there are some.' }),
    _links: z.strictObject({
      self: z.string().meta({ example: '/api/messages/1' }),
      user: z.string().meta({ example: '/api/users/1' }),
    }),
  })
  .meta({
    id: 'Message',
    example: {
      id: 1,
      created_at: 1767225600,
      updated_at: 1767225600,
      source: 'Hello, **world**',
      html: 'Hello, <strong>world</strong>',
      user_id: 1,
      room_id: 1,
      _links: { self: '/api/messages/1', user: '/api/users/1' },
    },
  });
export type Message = z.output<typeof Message>;

export const MessageList = z
  .strictObject({
    messages: z.array(Message),
    next: z.string().optional().meta({
      description:
        'The next page (same filters, after the last message here): only on a full page.',
      example: '/api/messages?limit=100&after=1767225600,42',
    }),
    previous: z.string().optional().meta({
      description:
        'The page of messages just before these in the list order (same filters): when a list asked without limit holds more than 1,000 (it answers the newest 1,000), or a full page asked with until.',
      example: '/api/messages?limit=1000&until=1767225600,42',
    }),
  })
  .meta({ id: 'MessageList' });

const BEFORE = /^(latest|[1-9]\d{0,14})$/;
const beforeMessage = 'must be latest or the id of a message from a previous page';
export const MAX_SEARCH_CHARS = 200;

const AFTER = /^(-?\d{1,15}),([1-9]\d{0,14})$/;
const afterMessage = 'must be <updated_at>,<id> from a previous page';

/** A keyset cursor of the last day's list: `<updated_at>,<id>`. */
function listCursor(description: string) {
  return z
    .string({
      error: (issue) => (Array.isArray(issue.input) ? 'must be given once' : afterMessage),
    })
    .regex(AFTER, { error: afterMessage })
    .transform((v) => {
      const [, ts, id] = AFTER.exec(v) as RegExpExecArray;
      return { updatedAt: Number(ts), id: Number(id) };
    })
    .meta({ description })
    .optional();
}

export const MessageListQuery = queryParams({
  updated_since: queryInteger({
    min: 0,
    max: MAX_15_DIGITS,
    description:
      'Only messages changed at or after this Unix time (seconds); never older than a day, whatever is asked.',
  }).optional(),
  user_id: queryInteger({
    min: 1,
    max: MAX_15_DIGITS,
    description: "Only this user's messages.",
  }).optional(),
  limit: queryInteger({
    min: 1,
    max: MAX_PAGE_SIZE,
    description: 'At most this many messages; a full page links the next one.',
  }).optional(),
  // No `example` on the cursors: Swagger UI puts examples into "Try it out", and these parameters
  // together make a request the API refuses; the examples are in the descriptions.
  after: listCursor(
    'Keyset cursor: the updated_at and id of the last message of the previous page, e.g. `1767225600,42`.',
  ),
  until: listCursor(
    'Keyset cursor (from a `previous` link): the messages just before this updated_at and id, in the list order.',
  ),
  room_id: queryInteger({
    min: 1,
    max: MAX_15_DIGITS,
    message: 'must be a room id',
    description: 'The room (default 1, general); a private one for its members only.',
  }).optional(),
  before: z
    .string({
      error: (issue) => (Array.isArray(issue.input) ? 'must be given once' : beforeMessage),
    })
    .regex(BEFORE, { error: beforeMessage })
    .transform((v) => (v === 'latest' ? Number.MAX_SAFE_INTEGER : Number(v)))
    .meta({
      description:
        'History, any age: the `limit` (default 50) messages with an id below this cursor, oldest first; `latest` for the newest page. A full page links the older one.',
    })
    .optional(),
  q: z
    .string({
      error: (issue) => (Array.isArray(issue.input) ? 'must be given once' : 'must be words'),
    })
    .refine((v) => v.trim().length > 0, { error: 'must not be empty' })
    .refine((v) => v.length <= MAX_SEARCH_CHARS, {
      error: `must be at most ${MAX_SEARCH_CHARS} characters`,
    })
    .meta({
      description:
        'Full-text search (every word, any age), newest first, in `room_id` or in every room the caller reads; pages with `before`. E.g. `deploy friday`.',
    })
    .optional(),
});

export type MessageListQuery = z.output<typeof MessageListQuery>;

export const MessageIdParams = z.object({ id: pathId('The message id.', 15) });

// One emoji grapheme (with its skin tones, joiners, flags and keycaps), never anything else: what the
// database keeps and every client shows.
// The class lists combining marks (joiner, variation selector, keycap) on purpose, each on its own.
// eslint-disable-next-line no-misleading-character-class
const EMOJI_CHARS = /^(?:[\p{Extended_Pictographic}\p{Emoji_Component}\u200d\ufe0f\u20e3])+$/u;
const EMOJI_NEEDS = /[\p{Extended_Pictographic}\p{Regional_Indicator}\u20e3]/u;
// Made on the first reaction: an Intl.Segmenter costs about 2 MB of RSS (ICU's break data), and
// users and tokens, which load this module too, never need one.
let segmenter: Intl.Segmenter | undefined;
export const MAX_EMOJI_CHARS = 32;

export function isEmoji(value: string): boolean {
  if (value.length === 0 || value.length > MAX_EMOJI_CHARS) return false;
  if (!EMOJI_CHARS.test(value) || !EMOJI_NEEDS.test(value)) return false;
  segmenter ??= new Intl.Segmenter('en', { granularity: 'grapheme' });
  return [...segmenter.segment(value)].length === 1;
}

export const ReactionParams = z.object({
  id: pathId('The message id.', 15),
  emoji: z
    .string()
    .refine(isEmoji)
    .meta({ description: 'One emoji grapheme (URL-encoded).', example: '%F0%9F%91%8D' }),
});

const messageNotFound = errorResponse('No message has this id.', 'message not found');
const badSource = errorResponse(
  'The source is missing, not a string, blank or too long, or the body is not a well-formed JSON object.',
  'source must not be empty',
);

export const messagesApi = {
  listMessages: defineOperation({
    operationId: 'listMessages',
    method: 'get',
    mount: MESSAGES_MOUNT,
    route: '/',
    tag: 'messages',
    summary: "List the last day's messages",
    description: 'Ordered by updated_at, then id; a client polls with updated_since.',
    security: 'optionalBearer',
    query: MessageListQuery,
    responses: {
      200: { description: 'The messages.', schema: MessageList },
      404: errorResponse(
        'The room does not exist, or is private and the caller is not a member.',
        'room not found',
      ),
      400: errorResponse(
        'A query parameter is invalid or repeated, or the body is not well-formed JSON.',
        'limit must be an integer from 1 to 1000',
      ),
      401: unauthorized,
    },
  }),
  createMessage: defineOperation({
    operationId: 'createMessage',
    method: 'post',
    mount: MESSAGES_MOUNT,
    route: '/',
    tag: 'messages',
    summary: 'Post a message',
    security: 'bearer',
    headers: CreateMessageHeaders,
    body: MessageSource,
    bodyExample: { source: 'Hello, **world**' },
    responses: {
      201: {
        description:
          'Posted; link previews follow as updates. Also the answer to a post sent again with an Idempotency-Key already used (the message that key made).',
        schema: Message,
        headers: {
          Location: { description: 'The new message.', required: true, example: '/api/messages/1' },
          'Idempotent-Replayed': {
            description:
              '`true` when the message was made by an earlier post with the same Idempotency-Key.',
            example: 'true',
          },
        },
      },
      400: errorResponse(
        'The body is not a message source, or the Idempotency-Key header is malformed.',
        'source must not be empty',
      ),
      401: unauthorized,
      403: errorResponse('The caller has not joined this public room.', 'join the room first'),
      404: errorResponse('No room the caller can post in has this id.', 'room not found'),
      422: errorResponse(
        'The Idempotency-Key was already used by this user for a message with another source or room (compared with the message as it is now).',
        IDEMPOTENCY_KEY_REUSED_ERROR,
      ),
    },
  }),
  getMessage: defineOperation({
    operationId: 'getMessage',
    method: 'get',
    mount: MESSAGES_MOUNT,
    route: '/:id',
    tag: 'messages',
    summary: 'Get a message',
    security: 'optionalBearer',
    params: MessageIdParams,
    responses: {
      200: { description: 'The message.', schema: Message },
      401: unauthorized,
      404: messageNotFound,
    },
  }),
  updateMessage: defineOperation({
    operationId: 'updateMessage',
    method: 'put',
    mount: MESSAGES_MOUNT,
    route: '/:id',
    tag: 'messages',
    summary: 'Edit your message',
    security: 'bearer',
    params: MessageIdParams,
    body: MessageSource,
    bodyExample: { source: 'Hello again' },
    responses: {
      204: { description: 'Edited.' },
      400: badSource,
      401: unauthorized,
      403: errorResponse("The message is someone else's, or deleted.", 'not your message'),
      404: messageNotFound,
    },
  }),
  deleteMessage: defineOperation({
    operationId: 'deleteMessage',
    method: 'delete',
    mount: MESSAGES_MOUNT,
    route: '/:id',
    tag: 'messages',
    summary: 'Delete your message',
    description:
      'Its text, reactions and mentions are erased; a tombstone (`deleted: true`) stays in the lists and goes out live.',
    security: 'bearer',
    params: MessageIdParams,
    responses: {
      204: { description: 'Deleted (or already).' },
      401: unauthorized,
      403: errorResponse("The message is someone else's.", 'not your message'),
      404: messageNotFound,
    },
  }),
  addReaction: defineOperation({
    operationId: 'addReaction',
    method: 'put',
    mount: MESSAGES_MOUNT,
    route: '/:id/reactions/:emoji',
    tag: 'messages',
    summary: 'React to a message',
    security: 'bearer',
    params: ReactionParams,
    responses: {
      204: { description: 'Reacted (already, or now).' },
      401: unauthorized,
      403: errorResponse('The message is deleted.', 'message deleted'),
      404: errorResponse(
        'No message the caller reads has this id, or the emoji is not one.',
        'message not found',
      ),
      409: errorResponse(
        `The message has ${MAX_EMOJI_PER_MESSAGE} different emoji already.`,
        'too many reactions',
      ),
    },
  }),
  removeReaction: defineOperation({
    operationId: 'removeReaction',
    method: 'delete',
    mount: MESSAGES_MOUNT,
    route: '/:id/reactions/:emoji',
    tag: 'messages',
    summary: 'Take your reaction back',
    security: 'bearer',
    params: ReactionParams,
    responses: {
      204: { description: 'Not reacting (any more).' },
      401: unauthorized,
      404: errorResponse(
        'No message the caller reads has this id, or the emoji is not one.',
        'message not found',
      ),
    },
  }),
};
