// The users service's contract: /api/users.
import { z } from 'zod';
import { defineOperation, errorResponse, retryAfterHeader, unauthorized } from './operations.js';
import { pathId, queryFlag, queryInteger, queryParams } from './fields.js';
import { noStore, Token } from './tokens.js';

export const USERS_MOUNT = '/api/users';
export const MAX_NICKNAME_CHARS = 32;
// bcrypt reads at most 72 bytes; longer passwords are refused rather than silently truncated.
export const MAX_PASSWORD_BYTES = 72;

// Half a UTF-16 pair: not text, and MariaDB refuses to store it.
const LONE_SURROGATE = /\p{Cs}/u;
// A colon could never sign in with Basic auth, which splits at the first one.
// eslint-disable-next-line no-control-regex
const CONTROL_OR_COLON = /[\u0000-\u001f\u007f:]/;

// Characters that make two different nicknames look the same, or one look like nothing: format
// characters (zero-width spaces and joiners, bidi controls such as U+202E, tag characters, soft
// hyphen), C1 controls (U+0085), line and paragraph separators, any space other than U+0020 that
// NFKC leaves (e.g. U+1680), unassigned and private-use code points, variation selectors, and the
// fillers and blanks that render as nothing.
// The class lists single invisible marks (U+034F, variation selectors) on purpose, each on its own.
const HIDDEN_OR_CONFUSING =
  // eslint-disable-next-line no-misleading-character-class
  /[\u0080-\u009F\p{Cf}\p{Zl}\p{Zp}\p{Cn}\p{Co}\u115F\u1160\u3164\uFFA0\u2800\u034F\u17B4\u17B5\u180B-\u180F\uFE00-\uFE0F\u{E0100}-\u{E01EF}]|[^\S \t\n\v\f\r]/u;

function codePoint(ch: string): string {
  return `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * The identity of a nickname: two nicknames with the same key are the same user to everyone
 * (uniqueness, sign-in, the login throttle). NFKC folds look-alike forms (full-width letters,
 * ligatures, composed and decomposed accents), then case is folded; the display form keeps the
 * case the user chose.
 */
export function nicknameKey(nickname: string): string {
  return nickname.normalize('NFKC').toLowerCase().normalize('NFKC');
}

// Checked in this order, the first failure reported, as before; hidden characters are named as
// typed, before NFKC (which the value is stored in) maps some to others.
export const Nickname = z
  .string({ error: 'must be a string' })
  .refine((v) => !LONE_SURROGATE.test(v), { error: 'must be valid Unicode', abort: true })
  .check((ctx) => {
    const bad = HIDDEN_OR_CONFUSING.exec(ctx.value)?.[0];
    if (bad === undefined) return;
    ctx.issues.push({
      code: 'custom',
      input: ctx.value,
      message: `must not contain invisible, formatting, bidi-control, separator or unassigned characters (${codePoint(bad)})`,
      continue: false,
    });
  })
  .overwrite((v) => v.normalize('NFKC'))
  .refine((v) => v.length > 0, { error: 'must not be empty', abort: true })
  .refine((v) => [...v].length <= MAX_NICKNAME_CHARS, {
    error: `must be at most ${MAX_NICKNAME_CHARS} characters`,
    abort: true,
  })
  .refine((v) => !CONTROL_OR_COLON.test(v), {
    error: 'must not contain control characters or ":"',
    abort: true,
  })
  .refine((v) => v.trim() === v, { error: 'must not start or end with spaces', abort: true })
  .meta({
    description: `1 to ${MAX_NICKNAME_CHARS} characters (code points) after NFKC normalisation; unique regardless of case and look-alike forms (NFKC), the display form kept as given; no control characters, no ":", no invisible, formatting, bidi-control, separator or unassigned characters, no leading or trailing spaces.`,
    minLength: 1,
    maxLength: MAX_NICKNAME_CHARS,
    pattern: '^[^\\u0000-\\u001f\\u007f:]*$',
    example: 'susan',
  });

export const Password = z
  .string({ error: 'must be a string' })
  .refine((v) => v.length > 0, { error: 'must not be empty', abort: true })
  .refine((v) => !LONE_SURROGATE.test(v), { error: 'must be valid Unicode', abort: true })
  .refine((v) => Buffer.byteLength(v) <= MAX_PASSWORD_BYTES, {
    error: `must be at most ${MAX_PASSWORD_BYTES} bytes`,
    abort: true,
  })
  .refine((v) => !v.includes('\0'), { error: 'must not contain NUL characters', abort: true })
  .meta({
    description: `Not empty, at most ${MAX_PASSWORD_BYTES} bytes of UTF-8, no NUL character.`,
    format: 'password',
    minLength: 1,
    example: 'dog',
  });

export const NewUser = z
  .object({ nickname: Nickname, password: Password }, { error: 'must be a JSON object' })
  .meta({ id: 'NewUser', description: 'Other keys are ignored.' });
export type NewUser = z.output<typeof NewUser>;

export const UserChange = z
  .object(
    { nickname: Nickname.optional(), password: Password.optional() },
    { error: 'must be a JSON object' },
  )
  .meta({
    id: 'UserChange',
    description: 'Either or both; absent ones stay as they are. Other keys are ignored.',
  });
export type UserChange = z.output<typeof UserChange>;

const unixTime = (description: string) =>
  z
    .int()
    .nonnegative()
    .meta({ description: `${description} (Unix time, seconds).` });

export const User = z
  .strictObject({
    id: z.int().positive(),
    created_at: unixTime('When the account was created'),
    updated_at: unixTime('When the account last changed (nickname, online)'),
    nickname: z.string(),
    last_seen_at: unixTime('When the user was last seen'),
    online: z.boolean(),
    _links: z.strictObject({
      self: z.string().meta({ example: '/api/users/1' }),
      messages: z.string().meta({ example: '/api/messages?user_id=1' }),
      tokens: z.string().meta({ example: '/api/tokens' }),
    }),
  })
  .meta({
    id: 'User',
    example: {
      id: 1,
      created_at: 1767225600,
      updated_at: 1767225600,
      nickname: 'susan',
      last_seen_at: 1767225600,
      online: true,
      _links: { self: '/api/users/1', messages: '/api/messages?user_id=1', tokens: '/api/tokens' },
    },
  });
export type User = z.output<typeof User>;

/** What another service reads of a User answer: its id (other fields ignored, so that they may grow). */
export const UserIdentity = z.object({ id: User.shape.id });

export const UserList = z
  .strictObject({
    users: z.array(User),
    next: z
      .string()
      .meta({ description: 'The next page, when this one is full (paging forward with after).' })
      .optional(),
    previous: z
      .string()
      .meta({
        description:
          'The page of users changed before these, when there are more: a list asked without limit, longer than USERS_PAGE_MAX, or a full page asked with before.',
      })
      .optional(),
  })
  .meta({ id: 'UserList' });

/** The most users one answer holds; a list asked without `limit` holds the newest this many. */
export const USERS_PAGE_MAX = 1000;

// A keyset cursor in the list's own order: the updated_at and nickname of a user.
const USER_CURSOR = /^(\d{1,15}),(.{1,128})$/su;
const cursorMessage = 'must be <updated_at>,<nickname> from a previous page';
const userCursor = (description: string) =>
  z
    .string({
      error: (issue) => (Array.isArray(issue.input) ? 'must be given once' : cursorMessage),
    })
    .regex(USER_CURSOR, { error: cursorMessage })
    .transform((v) => {
      const [, ts, nickname] = USER_CURSOR.exec(v) as RegExpExecArray;
      return { updatedAt: Number(ts), nickname: nickname as string };
    })
    // No `example`: Swagger UI would put one into both after and before in "Try it out".
    .meta({ description: `${description} E.g. \`1767225600,susan\`.` })
    .optional();

export const UserListQuery = queryParams({
  online: queryFlag('Only users online (1 or true) or only offline (0 or false).').optional(),
  updated_since: queryInteger({
    min: 0,
    max: 999999999999999,
    message: 'must be a Unix time in seconds',
    description: 'Only users changed at or after this Unix time (seconds).',
  }).optional(),
  limit: queryInteger({
    min: 1,
    max: USERS_PAGE_MAX,
    description: 'At most this many users, oldest change first; a full page links the next one.',
  }).optional(),
  after: userCursor('Keyset cursor: the page after this user (from a `next` link).'),
  before: userCursor('Keyset cursor: the page before this user (from a `previous` link).'),
}).refine((q) => !(q.after && q.before), { error: 'give after or before, not both' });

export type UserListQuery = z.output<typeof UserListQuery>;

export const UserIdParams = z.object({ id: pathId('The user id.', 16) });

const userNotFound = errorResponse('No user has this id.', 'user not found');
const location = {
  Location: { description: 'The new resource.', required: true, example: '/api/users/1' },
};
const badUser = (what: string) =>
  errorResponse(
    `${what}, or the body is not well-formed JSON. The message names the field.`,
    'nickname must not be empty',
  );

export const usersApi = {
  createUser: defineOperation({
    operationId: 'createUser',
    method: 'post',
    mount: USERS_MOUNT,
    route: '/',
    tag: 'users',
    summary: 'Register a new user',
    security: 'none',
    body: NewUser,
    bodyExample: { nickname: 'susan', password: 'dog' },
    responses: {
      201: {
        description: 'Registered (offline until it signs in).',
        schema: User,
        headers: location,
      },
      400: badUser(
        'A field is missing or invalid, the nickname is taken ("nickname already taken")',
      ),
    },
  }),
  listUsers: defineOperation({
    operationId: 'listUsers',
    method: 'get',
    mount: USERS_MOUNT,
    route: '/',
    tag: 'users',
    summary: 'List users',
    description:
      'Every user, oldest first; with a token, its holder is marked seen and online first.',
    security: 'optionalBearer',
    query: UserListQuery,
    responses: {
      200: { description: 'The users.', schema: UserList },
      400: errorResponse(
        'A query parameter is invalid or repeated, or the body is not well-formed JSON.',
        'online must be 0 or 1',
      ),
      401: unauthorized,
    },
  }),
  getMe: defineOperation({
    operationId: 'getMe',
    method: 'get',
    mount: USERS_MOUNT,
    route: '/me',
    tag: 'users',
    summary: 'Check a password: the user it signs in',
    description:
      "What POST /api/tokens asks on the client's behalf. Marks the user seen and online. Repeated failures for a nickname or from an address are slowed down (429).",
    security: 'basic',
    responses: {
      200: { description: 'The nickname and password match this user.', schema: User },
      401: unauthorized,
      429: errorResponse(
        'Too many failed sign-ins for this nickname or from this address.',
        'too many failed sign-ins, try again later',
        { 'Retry-After': { ...retryAfterHeader, required: true } },
      ),
    },
  }),
  pingMe: defineOperation({
    operationId: 'pingMe',
    method: 'put',
    mount: USERS_MOUNT,
    route: '/me',
    tag: 'users',
    summary: 'Mark the token holder seen and online',
    security: 'bearer',
    responses: { 204: { description: 'Marked.' }, 401: unauthorized },
  }),
  signOffMe: defineOperation({
    operationId: 'signOffMe',
    method: 'delete',
    mount: USERS_MOUNT,
    route: '/me',
    tag: 'users',
    summary: 'Mark the token holder offline',
    description: 'The token stays valid: revoke it with DELETE /api/tokens.',
    security: 'bearer',
    responses: { 204: { description: 'Marked offline.' }, 401: unauthorized },
  }),
  getUser: defineOperation({
    operationId: 'getUser',
    method: 'get',
    mount: USERS_MOUNT,
    route: '/:id',
    tag: 'users',
    summary: 'Get a user',
    security: 'optionalBearer',
    params: UserIdParams,
    responses: {
      200: { description: 'The user.', schema: User },
      401: unauthorized,
      404: userNotFound,
    },
  }),
  updateUser: defineOperation({
    operationId: 'updateUser',
    method: 'put',
    mount: USERS_MOUNT,
    route: '/:id',
    tag: 'users',
    summary: 'Change your nickname or password',
    security: 'bearer',
    params: UserIdParams,
    body: UserChange,
    bodyExample: { nickname: 'susan2' },
    description:
      'A new password signs the account out everywhere: every token of the user issued until now is revoked, the one of this request included, and the answer carries a fresh token. If the revocation cannot be recorded, nothing changes (503).',
    responses: {
      200: {
        description: 'The password changed (and the nickname, if given): a fresh token.',
        schema: Token,
        headers: noStore,
      },
      204: { description: 'Changed (no new password).' },
      400: badUser('A field is invalid, the nickname is taken ("nickname already taken")'),
      401: unauthorized,
      403: errorResponse(
        "The id is not the token holder's.",
        'you can only change your own account',
      ),
      404: userNotFound,
    },
  }),
};
