// The /api/messages routes: read, post, edit and delete messages, react, page back, search; in the
// rooms the caller can read.
import { Router, type Request } from 'express';
import {
  HttpError,
  type Auth,
  type Events,
  type Knex,
  type ResponseCache,
} from '@microflack/common';
import {
  audienceOf,
  findMessage,
  findMessagesByIds,
  historyKeys,
  insertMessage,
  listMessageKeys,
  messageUrl,
  nowSeconds,
  react,
  searchKeys,
  searchWords,
  SECONDS_PER_DAY,
  setMentions,
  toJson,
  tombstone,
  updateSource,
  type ListQuery,
  type MessageKey,
  type MessageRow,
} from './messages.js';
import { createRowJsonCache, joinJson, type RowJsonCache } from '@microflack/common';
import {
  GENERAL_ROOM_ID,
  IDEMPOTENCY_KEY,
  IDEMPOTENCY_KEY_ERROR,
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_KEY_REUSED_ERROR,
  IDEMPOTENT_REPLAYED_HEADER,
  MAX_EMOJI_PER_MESSAGE,
  MAX_PAGE_SIZE,
  MAX_REACTORS_LISTED,
  MessageIdParams,
  MessageListQuery,
  messagesApi as api,
  MessageSource,
  parseBody,
  parseParams,
  parseQuery,
  ReactionParams,
} from '@microflack/common/api';
import { findRoom, isMember, isPrivate, readableRoom } from './rooms.js';
import type { Previewer } from './previewer.js';
import { renderMarkdown } from './render.js';
import { DEFAULT_ROW_CACHE_BYTES } from './config.js';

export interface RouteDeps {
  db: Knex;
  auth: Auth;
  events: Events;
  previewer: Previewer;
  /** Whole answers kept in memory, with their ETags. */
  answers: ResponseCache;
  /** Bytes of serialised messages kept for the list (default DEFAULT_ROW_CACHE_BYTES, the setting ROW_CACHE_BYTES). */
  jsonCacheBytes?: number;
}

const MESSAGE_NOT_FOUND = 'message not found';
const ROOM_NOT_FOUND = 'room not found';
/** History and search pages when no limit is asked. */
export const DEFAULT_HISTORY_PAGE = 50;

export function callerId(req: Request): number | undefined {
  const id = req.auth?.claims.user_id;
  return typeof id === 'number' ? id : undefined;
}

/** Who may share a kept answer that depends on the caller: this caller only. */
export function callerScope(req: Request): string {
  return `user ${callerId(req) ?? 'anonymous'}`;
}

/** The general room's list is the same for everyone; a search or another room's is per caller. */
function listScope(req: Request): string {
  const { q, room_id: roomId } = req.query;
  return q === undefined && (roomId === undefined || roomId === '1')
    ? 'everyone'
    : callerScope(req);
}

/** The list's filters: as the original, never more than the last day, whatever was asked. */
function listQuery(query: MessageListQuery, roomId: number): ListQuery {
  const dayAgo = nowSeconds() - SECONDS_PER_DAY;
  const q: ListQuery = {
    roomId,
    since: Math.max(query.updated_since ?? 0, dayAgo),
    userId: query.user_id,
    limit: query.limit,
  };
  if (query.after) q.after = query.after;
  return q;
}

/**
 * A neighbouring page of the last day's list: same filters, `after` the last message of this page
 * (the next one) or `until` its first (the previous one).
 */
function listPageUrl(
  query: MessageListQuery,
  limit: number,
  cursor: 'after' | 'until',
  at: { updated_at: number; id: number },
): string {
  const params = new URLSearchParams();
  if (query.room_id !== undefined) params.set('room_id', String(query.room_id));
  if (query.updated_since !== undefined) params.set('updated_since', String(query.updated_since));
  if (query.user_id !== undefined) params.set('user_id', String(query.user_id));
  params.set('limit', String(limit));
  params.set(cursor, `${at.updated_at},${at.id}`);
  return `/api/messages?${params.toString()}`;
}

/** The older page of a history or search: same room and words, below the oldest id here. */
function beforePageUrl(query: MessageListQuery, limit: number, below: number): string {
  const params = new URLSearchParams();
  if (query.room_id !== undefined) params.set('room_id', String(query.room_id));
  if (query.q !== undefined) params.set('q', query.q);
  params.set('limit', String(limit));
  params.set('before', String(below));
  return `/api/messages?${params.toString()}`;
}

export function messagesRouter({
  db,
  auth,
  events,
  previewer,
  answers,
  jsonCacheBytes = DEFAULT_ROW_CACHE_BYTES,
}: RouteDeps): Router {
  const router = Router();
  const cache: RowJsonCache = createRowJsonCache(jsonCacheBytes);

  /**
   * Each listed message's JSON: kept if its version is, else read (at its current version).
   * `exact` is false when a row was read at a newer version than listed, or was gone.
   */
  async function serialised(keys: MessageKey[]): Promise<{ parts: Buffer[]; exact: boolean }> {
    const parts: Array<Buffer | undefined> = keys.map((k) => cache.get(k.id, k.version));
    const missing = keys.filter((_, i) => parts[i] === undefined).map((k) => k.id);
    if (missing.length === 0) return { parts: parts as Buffer[], exact: true };
    const rows = new Map((await findMessagesByIds(db, missing)).map((m) => [m.id, m]));
    let exact = true;
    for (let i = 0; i < keys.length; i++) {
      if (parts[i] !== undefined) continue;
      const key = keys[i] as MessageKey;
      const row = rows.get(key.id);
      // Gone since it was listed (no route deletes, but a row may be removed by hand): left out.
      if (!row) {
        exact = false;
        continue;
      }
      // Kept under the version it was read at, which may be newer than the listed one: the
      // bytes always match the version they are kept under.
      const json = Buffer.from(JSON.stringify(toJson(row)));
      cache.set(row.id, row.version, json);
      if (row.version !== key.version) exact = false;
      parts[i] = json;
    }
    return { parts: parts.filter((p): p is Buffer => p !== undefined), exact };
  }

  // The last whole answer, by the keys and tail it was built from: every poll of an unchanged list
  // gets it again without even joining. The bytes of (id, version) never change, so equal keys
  // mean equal bytes.
  let last: { keys: MessageKey[]; tail: string; body: Buffer } | undefined;
  function sameAsLast(keys: MessageKey[], tail: string): Buffer | undefined {
    if (!last || last.tail !== tail || last.keys.length !== keys.length) return undefined;
    for (let i = 0; i < keys.length; i++) {
      const a = keys[i] as MessageKey;
      const b = last.keys[i] as MessageKey;
      if (a.id !== b.id || a.version !== b.version) return undefined;
    }
    return last.body;
  }

  /** The room this caller reads, or 404 (a private room of others is not told apart from none). */
  async function roomToRead(roomId: number, userId: number | undefined) {
    if (roomId === GENERAL_ROOM_ID) return;
    if (!(await readableRoom(db, roomId, userId))) throw new HttpError(404, ROOM_NOT_FOUND);
  }

  /** The message if this caller may read it (its room public, or the caller a member), else 404. */
  async function messageToRead(id: number, userId: number | undefined): Promise<MessageRow> {
    const message = await findMessage(db, id);
    if (!message) throw new HttpError(404, MESSAGE_NOT_FOUND);
    if (message.room_id !== GENERAL_ROOM_ID) {
      const room = await findRoom(db, message.room_id);
      if (!room || (isPrivate(room) && !(await isMember(db, room.id, userId)))) {
        throw new HttpError(404, MESSAGE_NOT_FOUND);
      }
    }
    return message;
  }

  async function sendKeys(res: import('express').Response, keys: MessageKey[], tail: string) {
    let body = sameAsLast(keys, tail);
    if (!body) {
      const { parts, exact } = await serialised(keys);
      body = joinJson('{"messages":[', parts, tail);
      if (exact) last = { keys, tail, body };
    }
    // The same bytes res.json would send for { messages, next }, without serialising them again.
    res.set('Content-Type', 'application/json; charset=utf-8');
    res.send(body);
  }

  router.get(
    api.listMessages.route,
    auth.tokenOptional,
    answers.keep(listScope),
    async (req, res) => {
      const query = parseQuery(MessageListQuery, req.query);
      const userId = callerId(req);
      const roomId = query.room_id ?? GENERAL_ROOM_ID;
      if (query.q !== undefined || query.before !== undefined) {
        // History and search page by id; the last day's filters do not apply.
        for (const p of ['updated_since', 'after', 'until', 'user_id'] as const) {
          if (query[p] !== undefined) {
            throw new HttpError(
              400,
              `${p} cannot be combined with ${query.q !== undefined ? 'q' : 'before'}`,
            );
          }
        }
        const limit = query.limit ?? DEFAULT_HISTORY_PAGE;
        const before = query.before ?? Number.MAX_SAFE_INTEGER;
        let keys: MessageKey[];
        if (query.q !== undefined) {
          const words = searchWords(query.q);
          if (words.length === 0) throw new HttpError(400, 'q must contain a word');
          let rooms: number[] | Knex.QueryBuilder;
          if (query.room_id !== undefined) {
            await roomToRead(roomId, userId);
            rooms = [roomId];
          } else {
            // General, the public rooms and the caller's.
            rooms = db('rooms').select('id').where('private', false);
            if (userId !== undefined) {
              rooms = rooms.union(db('room_members').select('room_id').where('user_id', userId));
            }
          }
          keys = await searchKeys(db, words, rooms, before, limit);
        } else {
          await roomToRead(roomId, userId);
          keys = await historyKeys(db, roomId, before, limit);
        }
        let tail = ']}';
        if (keys.length === limit && keys.length > 0) {
          const oldest = Math.min(...keys.map((k) => k.id));
          tail = `],"next":${JSON.stringify(beforePageUrl(query, limit, oldest))}}`;
        }
        await sendKeys(res, keys, tail);
        return;
      }
      await roomToRead(roomId, userId);
      if (query.after && query.until) throw new HttpError(400, 'give after or until, not both');
      const q = listQuery(query, roomId);
      // Without limit or cursor, the original's answer (the whole last day) while it holds at most
      // MAX_PAGE_SIZE messages; beyond that the newest MAX_PAGE_SIZE, with a link to the ones before
      // them (docs/contracts/rest.md). `until` pages back the same way.
      if (query.until || (query.limit === undefined && !query.after)) {
        const limit = query.limit ?? MAX_PAGE_SIZE;
        const keys = await listMessageKeys(db, {
          ...q,
          limit: limit + 1,
          backward: { until: query.until },
        });
        let tail = ']}';
        const first = keys.length > limit ? keys[1] : undefined;
        if (first) {
          keys.shift();
          tail = `],"previous":${JSON.stringify(listPageUrl(query, limit, 'until', first))}}`;
        }
        await sendKeys(res, keys, tail);
        return;
      }
      const keys = await listMessageKeys(db, q);
      let tail = ']}';
      const lastKey = keys[keys.length - 1];
      if (q.limit !== undefined && keys.length === q.limit && lastKey) {
        const next = listPageUrl(query, q.limit, 'after', lastKey);
        tail = `],"next":${JSON.stringify(next)}}`;
      }
      await sendKeys(res, keys, tail);
    },
  );

  router.post(api.createMessage.route, auth.tokenRequired, async (req, res) => {
    const { source, room_id: roomId = GENERAL_ROOM_ID } = parseBody(MessageSource, req.body);
    const idempotencyKey = idempotencyKeyOf(req);
    const userId = callerId(req) ?? 0;
    if (roomId !== GENERAL_ROOM_ID) {
      const room = await findRoom(db, roomId);
      const member = room !== undefined && (await isMember(db, roomId, userId));
      if (!room || (isPrivate(room) && !member)) throw new HttpError(404, ROOM_NOT_FOUND);
      if (!member) throw new HttpError(403, 'join the room first');
    }
    const html = renderMarkdown(source);
    const links = previewer.linksOf(html);
    const { message, replayed, sameRequest } = await insertMessage(db, {
      source,
      html,
      user_id: userId,
      room_id: roomId,
      preview_pending: links.length > 0,
      idempotency_key: idempotencyKey,
    });
    if (!sameRequest) {
      // The key of another post: a client bug, and answering with that post would hide it. (The
      // same post sent again after an edit or a delete is a replay: its request is compared.)
      throw new HttpError(422, IDEMPOTENCY_KEY_REUSED_ERROR);
    }
    const json = toJson(message);
    // Queued before answering (it starts only after this handler yields), so the 201 never waits on it.
    if (links.length > 0 && !replayed) previewer.schedule(message.id);
    // Before the answer (Events.emitUpdatedModel): a post acknowledged is a post every reader hears
    // of. Sent again on a replay too: the first try may have died between its commit and its event,
    // and readers take a model they already have without harm.
    await events.emitUpdatedModel('Message', json, audienceOf(message.room_id));
    if (replayed) res.set(IDEMPOTENT_REPLAYED_HEADER, 'true');
    res.status(201).location(messageUrl(message.id)).json(json);
  });

  router.get(
    api.getMessage.route,
    auth.tokenOptional,
    answers.keep(callerScope),
    async (req, res) => {
      const { id } = parseParams(MessageIdParams, req.params, MESSAGE_NOT_FOUND);
      res.json(toJson(await messageToRead(id, callerId(req))));
    },
  );

  /** Tells every reader of the message's room what it is now (before the change is answered). */
  async function announce(id: number): Promise<void> {
    const updated = await findMessage(db, id);
    if (updated) {
      await events.emitUpdatedModel('Message', toJson(updated), audienceOf(updated.room_id));
    }
  }

  router.put(api.updateMessage.route, auth.tokenRequired, async (req, res) => {
    const { id } = parseParams(MessageIdParams, req.params, MESSAGE_NOT_FOUND);
    const message = await messageToRead(id, callerId(req));
    if (message.user_id !== callerId(req)) throw new HttpError(403, 'not your message');
    if (message.deleted) throw new HttpError(403, 'message deleted');
    const { source } = parseBody(MessageSource, req.body);
    const html = renderMarkdown(source);
    const links = previewer.linksOf(html);
    await updateSource(db, id, { source, html, preview_pending: links.length > 0 });
    await setMentions(db, message, source);
    if (links.length > 0) previewer.schedule(id);
    await announce(id);
    res.status(204).end();
  });

  router.delete(api.deleteMessage.route, auth.tokenRequired, async (req, res) => {
    const { id } = parseParams(MessageIdParams, req.params, MESSAGE_NOT_FOUND);
    const message = await messageToRead(id, callerId(req));
    if (message.user_id !== callerId(req)) throw new HttpError(403, 'not your message');
    if (message.deleted) {
      res.status(204).end();
      return;
    }
    await tombstone(db, id);
    cache.delete(id);
    last = undefined;
    await announce(id);
    res.status(204).end();
  });

  for (const on of [true, false]) {
    const op = on ? api.addReaction : api.removeReaction;
    router[op.method](op.route, auth.tokenRequired, async (req, res) => {
      const { id, emoji } = parseParams(ReactionParams, req.params, MESSAGE_NOT_FOUND);
      const userId = callerId(req) ?? 0;
      const message = await messageToRead(id, userId);
      if (message.deleted) {
        if (on) throw new HttpError(403, 'message deleted');
        res.status(204).end();
        return;
      }
      const done = await react(
        db,
        { messageId: id, emoji, userId, on },
        { maxEmoji: MAX_EMOJI_PER_MESSAGE, maxListed: MAX_REACTORS_LISTED },
      );
      if (!done) throw new HttpError(409, 'too many reactions');
      await announce(id);
      res.status(204).end();
    });
  }

  return router;
}

/** The post's Idempotency-Key, null without one; 400 when malformed (a repeated header too). */
function idempotencyKeyOf(req: Request): string | null {
  const raw = req.headers[IDEMPOTENCY_KEY_HEADER];
  if (raw === undefined) return null;
  // Structured-field form ("...") as the IETF draft writes it, or bare as most APIs take it.
  const key = typeof raw === 'string' ? raw.replace(/^"(.*)"$/, '$1') : '';
  if (!IDEMPOTENCY_KEY.test(key)) throw new HttpError(400, IDEMPOTENCY_KEY_ERROR);
  return key;
}
