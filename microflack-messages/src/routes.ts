// The /api/messages routes: read, post and edit messages.
import { Router } from 'express';
import { HttpError, type Auth, type Events, type Knex } from '@microflack/common';
import {
  findMessage,
  findMessagesByIds,
  insertMessage,
  listMessageKeys,
  messageUrl,
  nowSeconds,
  SECONDS_PER_DAY,
  toJson,
  updateSource,
  type ListQuery,
  type MessageKey,
} from './messages.js';
import { createRowJsonCache, joinJson, type RowJsonCache } from '@microflack/common';
import {
  MessageIdParams,
  MessageListQuery,
  messagesApi as api,
  MessageSource,
  parseBody,
  parseParams,
  parseQuery,
} from '@microflack/common/api';
import type { Previewer } from './previewer.js';
import { renderMarkdown } from './render.js';

export interface RouteDeps {
  db: Knex;
  auth: Auth;
  events: Events;
  previewer: Previewer;
  /** Bytes of serialised messages kept for the list (default DEFAULT_JSON_CACHE_BYTES). */
  jsonCacheBytes?: number;
}

// Some 60,000 typical messages: far more than a day's list, well inside the memory budget.
export const DEFAULT_JSON_CACHE_BYTES = 16 * 1024 * 1024;

const MESSAGE_NOT_FOUND = 'message not found';

/** The list's filters: as the original, never more than the last day, whatever was asked. */
function listQuery(query: MessageListQuery): ListQuery {
  const dayAgo = nowSeconds() - SECONDS_PER_DAY;
  const q: ListQuery = {
    since: Math.max(query.updated_since ?? 0, dayAgo),
    userId: query.user_id,
    limit: query.limit,
  };
  if (query.after) q.after = query.after;
  return q;
}

/** The next page's URL: same filters, cursor at the last message of this page. */
function nextPageUrl(
  query: MessageListQuery,
  limit: number,
  last: { updated_at: number; id: number },
): string {
  const params = new URLSearchParams();
  if (query.updated_since !== undefined) params.set('updated_since', String(query.updated_since));
  if (query.user_id !== undefined) params.set('user_id', String(query.user_id));
  params.set('limit', String(limit));
  params.set('after', `${last.updated_at},${last.id}`);
  return `/api/messages?${params.toString()}`;
}

export function messagesRouter({
  db,
  auth,
  events,
  previewer,
  jsonCacheBytes = DEFAULT_JSON_CACHE_BYTES,
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

  router.get(api.listMessages.route, auth.tokenOptional, async (req, res) => {
    const query = parseQuery(MessageListQuery, req.query);
    const q = listQuery(query);
    const keys = await listMessageKeys(db, q);
    let tail = ']}';
    const lastKey = keys[keys.length - 1];
    if (q.limit !== undefined && keys.length === q.limit && lastKey) {
      const next = nextPageUrl(query, q.limit, lastKey);
      tail = `],"next":${JSON.stringify(next)}}`;
    }
    let body = sameAsLast(keys, tail);
    if (!body) {
      const { parts, exact } = await serialised(keys);
      body = joinJson('{"messages":[', parts, tail);
      if (exact) last = { keys, tail, body };
    }
    // The same bytes res.json would send for { messages, next }, without serialising them again.
    res.set('Content-Type', 'application/json; charset=utf-8');
    res.send(body);
  });

  router.post(api.createMessage.route, auth.tokenRequired, async (req, res) => {
    const { source } = parseBody(MessageSource, req.body);
    const html = renderMarkdown(source);
    const links = previewer.linksOf(html);
    const message = await insertMessage(db, {
      source,
      html,
      user_id: (req.auth?.claims.user_id as number) ?? 0,
      preview_pending: links.length > 0,
    });
    const json = toJson(message);
    // Queued before answering (it starts only after this handler yields), so the 201 never waits on it.
    if (links.length > 0) previewer.schedule(message.id);
    res.status(201).location(messageUrl(message.id)).json(json);
    events.emitUpdatedModel('Message', json);
  });

  router.get(api.getMessage.route, auth.tokenOptional, async (req, res) => {
    const { id } = parseParams(MessageIdParams, req.params, MESSAGE_NOT_FOUND);
    const message = await findMessage(db, id);
    if (!message) throw new HttpError(404, MESSAGE_NOT_FOUND);
    res.json(toJson(message));
  });

  router.put(api.updateMessage.route, auth.tokenRequired, async (req, res) => {
    const { id } = parseParams(MessageIdParams, req.params, MESSAGE_NOT_FOUND);
    const message = await findMessage(db, id);
    if (!message) throw new HttpError(404, MESSAGE_NOT_FOUND);
    if (message.user_id !== req.auth?.claims.user_id) throw new HttpError(403, 'not your message');
    const { source } = parseBody(MessageSource, req.body);
    const html = renderMarkdown(source);
    const links = previewer.linksOf(html);
    await updateSource(db, id, { source, html, preview_pending: links.length > 0 });
    if (links.length > 0) previewer.schedule(id);
    res.status(204).end();
    const updated = await findMessage(db, id);
    if (updated) events.emitUpdatedModel('Message', toJson(updated));
  });

  return router;
}
