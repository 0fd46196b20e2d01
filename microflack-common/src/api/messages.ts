// The messages service's contract: /api/messages.
import { z } from 'zod';
import { defineOperation, errorResponse, unauthorized } from './operations.js';
import { pathId, queryInteger, queryParams } from './fields.js';

export const MESSAGES_MOUNT = '/api/messages';
export const MAX_SOURCE_CHARS = 4000;
export const MAX_PAGE_SIZE = 1000;
const MAX_15_DIGITS = 999999999999999;

export const MessageSource = z
  .object(
    {
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
  .meta({ id: 'MessageSource', description: 'Other keys are ignored.' });

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
  })
  .meta({ id: 'MessageList' });

const AFTER = /^(-?\d{1,15}),([1-9]\d{0,14})$/;
const afterMessage = 'must be <updated_at>,<id> from a previous page';

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
  after: z
    .string({
      error: (issue) => (Array.isArray(issue.input) ? 'must be given once' : afterMessage),
    })
    .regex(AFTER, { error: afterMessage })
    .transform((v) => {
      const [, ts, id] = AFTER.exec(v) as RegExpExecArray;
      return { updatedAt: Number(ts), id: Number(id) };
    })
    .meta({
      description: 'Keyset cursor: the updated_at and id of the last message of the previous page.',
      example: '1767225600,42',
    })
    .optional(),
});

export type MessageListQuery = z.output<typeof MessageListQuery>;

export const MessageIdParams = z.object({ id: pathId('The message id.', 15) });

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
    body: MessageSource,
    bodyExample: { source: 'Hello, **world**' },
    responses: {
      201: {
        description: 'Posted; link previews follow as updates.',
        schema: Message,
        headers: {
          Location: { description: 'The new message.', required: true, example: '/api/messages/1' },
        },
      },
      400: badSource,
      401: unauthorized,
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
      403: errorResponse("The message is someone else's.", 'not your message'),
      404: messageNotFound,
    },
  }),
};
