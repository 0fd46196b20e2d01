// The /api/users routes, in the original's order and with its answers, stricter on input.
import { Router, type Request, type RequestHandler } from 'express';
import {
  authRequired,
  HttpError,
  logger,
  readBasicAuth,
  type Auth,
  type TokenClaims,
  type Events,
  type Knex,
} from '@microflack/common';
import type { LoginThrottle } from './login-throttle.js';
import { MAX_PASSWORD_BYTES, type Passwords } from './passwords.js';
import {
  findUserById,
  findUserByNickname,
  findUsersByIds,
  insertUser,
  listUserKeys,
  markOffline,
  markSeen,
  NicknameTakenError,
  toJson,
  updateUser,
  type UserKey,
  type UserRow,
} from './users.js';
import { createRowJsonCache, joinJson } from '@microflack/common';

const log = logger.child({ module: 'users' });

export interface RoutesDeps {
  db: Knex;
  auth: Auth;
  events: Events;
  passwords: Passwords;
  throttle: LoginThrottle;
  /** Bytes of serialised users kept for the list (default DEFAULT_JSON_CACHE_BYTES). */
  jsonCacheBytes?: number;
}

// Some 20,000 users' JSON.
export const DEFAULT_JSON_CACHE_BYTES = 4 * 1024 * 1024;

export const MAX_NICKNAME_CHARS = 32;
// Half a UTF-16 pair: not text, and MariaDB refuses to store it.
const LONE_SURROGATE = /\p{Cs}/u;

declare module 'express-serve-static-core' {
  interface Request {
    /** The user the request's token or password belongs to. */
    user?: UserRow;
  }
}

function validNickname(value: unknown): string {
  if (typeof value !== 'string') throw new HttpError(400, 'nickname must be a string');
  if (LONE_SURROGATE.test(value)) throw new HttpError(400, 'nickname must be valid Unicode');
  const chars = [...value].length;
  if (chars === 0) throw new HttpError(400, 'nickname must not be empty');
  if (chars > MAX_NICKNAME_CHARS) {
    throw new HttpError(400, `nickname must be at most ${MAX_NICKNAME_CHARS} characters`);
  }
  // A colon could never sign in with Basic auth, which splits at the first one.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f:]/.test(value)) {
    throw new HttpError(400, 'nickname must not contain control characters or ":"');
  }
  if (value.trim() !== value)
    throw new HttpError(400, 'nickname must not start or end with spaces');
  return value;
}

function validPassword(value: unknown): string {
  if (typeof value !== 'string') throw new HttpError(400, 'password must be a string');
  if (value.length === 0) throw new HttpError(400, 'password must not be empty');
  if (LONE_SURROGATE.test(value)) throw new HttpError(400, 'password must be valid Unicode');
  if (Buffer.byteLength(value) > MAX_PASSWORD_BYTES) {
    throw new HttpError(400, `password must be at most ${MAX_PASSWORD_BYTES} bytes`);
  }
  if (value.includes('\0')) throw new HttpError(400, 'password must not contain NUL characters');
  return value;
}

function jsonObject(req: Request): Record<string, unknown> {
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

/** A positive integer id, or undefined for anything else (which the routes answer 404). */
export function parseId(raw: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(raw)) return undefined;
  const id = Number(raw);
  return Number.isSafeInteger(id) ? id : undefined;
}

function queryString(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `${name} must be given once`);
  return v;
}

export function usersRouter(deps: RoutesDeps): Router {
  const { db, auth, events, passwords, throttle } = deps;
  const router = Router();
  const cache = createRowJsonCache(deps.jsonCacheBytes ?? DEFAULT_JSON_CACHE_BYTES);

  /** Each listed user's JSON: kept if its version is, else read (at its current version). */
  async function serialised(keys: UserKey[]): Promise<Buffer[]> {
    const parts: Array<Buffer | undefined> = keys.map((k) => cache.get(k.id, k.version));
    const missing = keys.filter((_, i) => parts[i] === undefined).map((k) => k.id);
    if (missing.length === 0) return parts as Buffer[];
    const rows = new Map((await findUsersByIds(db, missing)).map((u) => [Number(u.id), u]));
    for (let i = 0; i < keys.length; i++) {
      if (parts[i] !== undefined) continue;
      const row = rows.get((keys[i] as UserKey).id);
      if (!row) continue; // gone since it was listed
      // Kept under the version it was read at (maybe newer than listed): bytes match their key.
      const json = Buffer.from(JSON.stringify(toJson(row)));
      cache.set(Number(row.id), Number(row.version), json);
      parts[i] = json;
    }
    return parts.filter((p): p is Buffer => p !== undefined);
  }

  function emit(user: UserRow): void {
    events.emitUpdatedModel('User', toJson(user));
  }

  // After tokenRequired/tokenOptional: the token's user, marked seen and online.
  const loadTokenUser: RequestHandler = async (req, _res, next) => {
    if (!req.auth) return next();
    const user = await findUserById(db, req.auth.claims.user_id);
    // A valid signature for a user that no longer exists is no credential.
    if (!user) throw authRequired();
    const seen = await markSeen(db, user);
    if (seen.changed) emit(seen.user);
    req.user = seen.user;
    next();
  };
  const tokenRequired: [RequestHandler, RequestHandler] = [auth.tokenRequired, loadTokenUser];
  const tokenOptional: [RequestHandler, RequestHandler] = [auth.tokenOptional, loadTokenUser];

  const basicRequired: RequestHandler = async (req, _res, next) => {
    const credentials = readBasicAuth(req);
    if (!credentials) throw authRequired();
    const { username, password } = credentials;
    // The client's, as the LB saw it, or as the tokens service vouches for it.
    const address = auth.clientAddress(req);
    const turn = await throttle.begin(username, address);
    if (!('attempt' in turn)) {
      throw new HttpError(429, 'too many failed sign-ins, try again later', {
        'Retry-After': String(Math.ceil(turn.waitMs / 1000)),
      });
    }
    const { attempt } = turn;
    let user: UserRow | undefined;
    let verified: boolean;
    try {
      const lookable = username.length > 0 && username.length <= 4 * MAX_NICKNAME_CHARS;
      user = lookable ? await findUserByNickname(db, username) : undefined;
      verified = await passwords.verify(password, user?.password_hash);
    } catch (err) {
      // Released when the database fails, or the nickname would stay slowed for nothing.
      await attempt.release();
      throw err;
    }
    if (!verified || !user) {
      await attempt.failed();
      throw authRequired();
    }
    await attempt.succeeded();
    const seen = await markSeen(db, user);
    if (seen.changed) emit(seen.user);
    req.user = seen.user;
    next();
  };

  router.post('/', async (req, res) => {
    const body = jsonObject(req);
    const nickname = validNickname(body.nickname);
    const password = validPassword(body.password);
    if (await findUserByNickname(db, nickname)) throw new HttpError(400, 'nickname already taken');
    let user: UserRow;
    try {
      user = await insertUser(db, nickname, await passwords.hash(password));
    } catch (err) {
      if (err instanceof NicknameTakenError) throw new HttpError(400, 'nickname already taken');
      throw err;
    }
    emit(user);
    res.status(201).location(`/api/users/${user.id}`).json(toJson(user));
  });

  router.get('/', ...tokenOptional, async (req, res) => {
    const online = queryString(req, 'online');
    const since = queryString(req, 'updated_since');
    const filter: { online?: boolean; updatedSince?: number } = {};
    if (online !== undefined) {
      if (!['0', '1', 'true', 'false'].includes(online)) {
        throw new HttpError(400, 'online must be 0 or 1');
      }
      filter.online = online === '1' || online === 'true';
    }
    if (since !== undefined) {
      if (!/^[0-9]{1,15}$/.test(since)) {
        throw new HttpError(400, 'updated_since must be a Unix time in seconds');
      }
      filter.updatedSince = Number(since);
    }
    const parts = await serialised(await listUserKeys(db, filter));
    // The same bytes res.json would send for { users }, without serialising them again.
    res.set('Content-Type', 'application/json; charset=utf-8');
    res.send(joinJson('{"users":[', parts, ']}'));
  });

  // The /me routes come before /:id, which would otherwise take "me" for an id.
  router.get('/me', basicRequired, (req, res) => {
    res.json(toJson(req.user as UserRow));
  });

  router.put('/me', ...tokenRequired, (_req, res) => {
    // loadTokenUser has already marked the user seen and online.
    res.status(204).end();
  });

  router.delete('/me', auth.tokenRequired, async (req, res) => {
    const user = await findUserById(db, req.auth?.claims.user_id as number);
    if (!user) throw authRequired();
    const gone = await markOffline(db, user);
    if (gone.changed) emit(gone.user);
    res.status(204).end();
  });

  router.get('/:id', ...tokenOptional, async (req, res) => {
    const id = parseId(req.params.id as string);
    const user = id === undefined ? undefined : await findUserById(db, id);
    if (!user) throw new HttpError(404, 'user not found');
    res.json(toJson(user));
  });

  router.put('/:id', ...tokenRequired, async (req, res) => {
    const id = parseId(req.params.id as string);
    const user = id === undefined ? undefined : await findUserById(db, id);
    if (!user) throw new HttpError(404, 'user not found');
    if (user.id !== req.user?.id) throw new HttpError(403, 'you can only change your own account');
    const body = jsonObject(req);
    const nickname = body.nickname === undefined ? undefined : validNickname(body.nickname);
    const password = body.password === undefined ? undefined : validPassword(body.password);
    if (nickname !== undefined && nickname !== user.nickname) {
      if (await findUserByNickname(db, nickname))
        throw new HttpError(400, 'nickname already taken');
    }
    const change: { nickname?: string; password_hash?: string } = {};
    if (nickname !== undefined) change.nickname = nickname;
    if (password !== undefined) {
      change.password_hash = await passwords.hash(password);
      // A new password signs the account out everywhere: every token issued until now, this
      // request's included, is revoked before the password changes (if etcd cannot record that,
      // nothing changes). The client gets a fresh token in the answer.
      const claims = req.auth?.claims as TokenClaims;
      try {
        await auth.revocations.revokeAllTokens(user.id, claims.iat_ms ?? claims.iat * 1000 + 999);
      } catch (err) {
        log.warn({ err }, 'revocation could not be written to etcd');
        throw new HttpError(503, 'revocation store unavailable, try again shortly', {
          'Retry-After': '1',
        });
      }
    }
    let updated: UserRow | undefined;
    try {
      updated = await updateUser(db, user.id, change);
    } catch (err) {
      if (err instanceof NicknameTakenError) throw new HttpError(400, 'nickname already taken');
      throw err;
    }
    if (updated && Object.keys(change).length > 0) emit(updated);
    if (password !== undefined) {
      res.set('Cache-Control', 'no-store');
      res.status(200).json({ token: auth.generateToken(user.id) });
      return;
    }
    res.status(204).end();
  });

  return router;
}
