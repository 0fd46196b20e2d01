// The /api/users routes, in the original's order and with its answers, stricter on input.
import { Router, type RequestHandler, type Response } from 'express';
import {
  authRequired,
  HttpError,
  logger,
  readBasicAuth,
  type Auth,
  type TokenClaims,
  type Events,
  type Knex,
  type ResponseCache,
} from '@microflack/common';
import {
  MAX_NICKNAME_CHARS,
  nicknameKey,
  NewUser,
  parseBody,
  parseParams,
  parseQuery,
  UserChange,
  UserIdParams,
  UserListQuery,
  USERS_PAGE_MAX,
  usersApi as api,
} from '@microflack/common/api';
import type { LoginThrottle } from './login-throttle.js';
import { PasswordsBusy, type Passwords } from './passwords.js';
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
  type UserFilter,
  type UserKey,
  type UserRow,
} from './users.js';
import { createRowJsonCache, joinJson } from '@microflack/common';
import { DEFAULT_ROW_CACHE_BYTES } from './config.js';

const log = logger.child({ module: 'users' });

/** Aborted when the client's connection closes before it has its answer: nobody waits any more. */
function clientGone(res: Response): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** A hash refused its turn (waited too long, or its client left): 503, come back in a second. */
async function inTurn<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof PasswordsBusy) {
      throw new HttpError(503, 'too many passwords to check, try again', { 'Retry-After': '1' });
    }
    throw err;
  }
}

export interface RoutesDeps {
  db: Knex;
  auth: Auth;
  events: Events;
  passwords: Passwords;
  throttle: LoginThrottle;
  /** Bytes of serialised users kept for the list (default DEFAULT_ROW_CACHE_BYTES, the setting ROW_CACHE_BYTES). */
  jsonCacheBytes?: number;
  /** Whole answers kept in memory, with their ETags. */
  answers: ResponseCache;
}

// Users are public: the list and each user answer the same whoever asks.
const everyone = () => 'everyone';

const USER_NOT_FOUND = 'user not found';

declare module 'express-serve-static-core' {
  interface Request {
    /** The user the request's token or password belongs to. */
    user?: UserRow;
  }
}

export function usersRouter(deps: RoutesDeps): Router {
  const { db, auth, events, passwords, throttle } = deps;
  const router = Router();
  const cache = createRowJsonCache(deps.jsonCacheBytes ?? DEFAULT_ROW_CACHE_BYTES);

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

  /** Awaited before the answer, as every change is (Events.emitUpdatedModel). */
  function emit(user: UserRow): Promise<void> {
    return events.emitUpdatedModel('User', toJson(user));
  }

  // After tokenRequired/tokenOptional: the token's user, marked seen and online.
  const loadTokenUser: RequestHandler = async (req, _res, next) => {
    if (!req.auth) return next();
    const user = await findUserById(db, req.auth.claims.user_id);
    // A valid signature for a user that no longer exists is no credential.
    if (!user) throw authRequired();
    const seen = await markSeen(db, user);
    if (seen.changed) await emit(seen.user);
    req.user = seen.user;
    next();
  };
  const tokenRequired: [RequestHandler, RequestHandler] = [auth.tokenRequired, loadTokenUser];
  const tokenOptional: [RequestHandler, RequestHandler] = [auth.tokenOptional, loadTokenUser];

  const basicRequired: RequestHandler = async (req, res, next) => {
    const credentials = readBasicAuth(req);
    if (!credentials) throw authRequired();
    const { username, password } = credentials;
    // The client's, as the LB saw it, or as the tokens service vouches for it.
    const address = auth.clientAddress(req);
    // Counted per nickname identity: "Ada", "ADA" and "ａｄａ" share one allowance.
    const turn = await throttle.begin(nicknameKey(username), address);
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
      verified = await inTurn(passwords.verify(password, user?.password_hash, clientGone(res)));
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
    if (seen.changed) await emit(seen.user);
    req.user = seen.user;
    next();
  };

  router.post(api.createUser.route, async (req, res) => {
    const { nickname, password } = parseBody(NewUser, req.body);
    if (await findUserByNickname(db, nickname)) throw new HttpError(400, 'nickname already taken');
    let user: UserRow;
    try {
      user = await insertUser(
        db,
        nickname,
        await inTurn(passwords.hash(password, clientGone(res))),
      );
    } catch (err) {
      if (err instanceof NicknameTakenError) throw new HttpError(400, 'nickname already taken');
      throw err;
    }
    await emit(user);
    res.status(201).location(`/api/users/${user.id}`).json(toJson(user));
  });

  // Paging (docs/contracts/rest.md): without limit or cursor, the whole list while it holds at
  // most USERS_PAGE_MAX users (the original's answer), else the newest USERS_PAGE_MAX with a link
  // to the older ones; `limit`/`after` page forward from the oldest change, `before` backward.
  router.get(
    api.listUsers.route,
    ...tokenOptional,
    deps.answers.keep(everyone),
    async (req, res) => {
      const query = parseQuery(UserListQuery, req.query);
      const filter: UserFilter = {};
      if (query.online !== undefined) filter.online = query.online;
      if (query.updated_since !== undefined) filter.updatedSince = query.updated_since;
      const limit = query.limit ?? USERS_PAGE_MAX;
      const backward = query.before !== undefined || (query.limit === undefined && !query.after);
      // One more than a page tells whether there is more, without counting.
      const keys = await listUserKeys(
        db,
        filter,
        backward
          ? { direction: 'backward', before: query.before, limit: limit + 1 }
          : { direction: 'forward', after: query.after, limit: limit + 1 },
      );
      const more = keys.length > limit;
      if (more) {
        if (backward) keys.shift();
        else keys.pop();
      }
      let tail = ']';
      const edge = backward ? keys[0] : keys[keys.length - 1];
      if (more && edge) {
        const params = new URLSearchParams();
        if (query.online !== undefined) params.set('online', query.online ? '1' : '0');
        if (query.updated_since !== undefined)
          params.set('updated_since', String(query.updated_since));
        params.set('limit', String(limit));
        params.set(backward ? 'before' : 'after', `${edge.updated_at},${edge.nickname}`);
        const link = `/api/users?${params.toString()}`;
        tail += `,${JSON.stringify(backward ? 'previous' : 'next')}:${JSON.stringify(link)}`;
      }
      const parts = await serialised(keys);
      // The same bytes res.json would send for { users, next | previous }, without serialising them
      // again.
      res.set('Content-Type', 'application/json; charset=utf-8');
      res.send(joinJson('{"users":[', parts, `${tail}}`));
    },
  );

  // The /me routes come before /:id, which would otherwise take "me" for an id.
  router.get(api.getMe.route, basicRequired, (req, res) => {
    res.json(toJson(req.user as UserRow));
  });

  router.put(api.pingMe.route, ...tokenRequired, (_req, res) => {
    // loadTokenUser has already marked the user seen and online.
    res.status(204).end();
  });

  router.delete(api.signOffMe.route, auth.tokenRequired, async (req, res) => {
    const user = await findUserById(db, req.auth?.claims.user_id as number);
    if (!user) throw authRequired();
    const gone = await markOffline(db, user);
    if (gone.changed) await emit(gone.user);
    res.status(204).end();
  });

  router.get(api.getUser.route, ...tokenOptional, deps.answers.keep(everyone), async (req, res) => {
    const { id } = parseParams(UserIdParams, req.params, USER_NOT_FOUND);
    const user = await findUserById(db, id);
    if (!user) throw new HttpError(404, USER_NOT_FOUND);
    res.json(toJson(user));
  });

  router.put(api.updateUser.route, ...tokenRequired, async (req, res) => {
    const { id } = parseParams(UserIdParams, req.params, USER_NOT_FOUND);
    const user = await findUserById(db, id);
    if (!user) throw new HttpError(404, USER_NOT_FOUND);
    if (user.id !== req.user?.id) throw new HttpError(403, 'you can only change your own account');
    // Only once the caller may change this account: a refusal must not tell more.
    const { nickname, password } = parseBody(UserChange, req.body);
    if (nickname !== undefined && nickname !== user.nickname) {
      // Taken by someone else; the same identity is one's own (a change of case, say).
      const holder = await findUserByNickname(db, nickname);
      if (holder && holder.id !== user.id) throw new HttpError(400, 'nickname already taken');
    }
    const change: { nickname?: string; password_hash?: string } = {};
    if (nickname !== undefined) change.nickname = nickname;
    if (password !== undefined) {
      change.password_hash = await inTurn(passwords.hash(password, clientGone(res)));
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
    if (updated && Object.keys(change).length > 0) await emit(updated);
    if (password !== undefined) {
      res.set('Cache-Control', 'no-store');
      res.status(200).json({ token: auth.generateToken(user.id) });
      return;
    }
    res.status(204).end();
  });

  return router;
}
