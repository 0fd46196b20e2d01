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
import type { Previewer } from './previewer.js';
import { renderMarkdown } from './render.js';

export const MAX_SOURCE_CHARS = 4000;
export const MAX_PAGE_SIZE = 1000;

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

const INTEGER = /^-?\d{1,15}$/;
const ID = /^[1-9]\d{0,14}$/;

function queryValue(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  // A repeated parameter arrives as an array: ambiguous, so refused.
  if (typeof v !== 'string') throw new HttpError(400, `${name} must be given once`);
  return v;
}

function integerParam(
  query: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const v = queryValue(query, name);
  if (v === undefined) return undefined;
  const n = INTEGER.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max))
    throw new HttpError(400, `${name} must be an integer from ${min} to ${max}`);
  return n;
}

function parseListQuery(query: Record<string, unknown>): ListQuery {
  const now = nowSeconds();
  const dayAgo = now - SECONDS_PER_DAY;
  const requested = integerParam(
    query,
    'updated_since',
    -Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER,
  );
  const q: ListQuery = {
    // As the original: never more than the last day, whatever was asked.
    since: Math.max(requested ?? 0, dayAgo),
    userId: integerParam(query, 'user_id', 1, Number.MAX_SAFE_INTEGER),
    limit: integerParam(query, 'limit', 1, MAX_PAGE_SIZE),
  };
  const after = queryValue(query, 'after');
  if (after !== undefined) {
    const [ts, id, extra] = after.split(',');
    if (extra !== undefined || !ts || !id || !INTEGER.test(ts) || !ID.test(id)) {
      throw new HttpError(400, 'after must be <updated_at>,<id> from a previous page');
    }
    q.after = { updatedAt: Number(ts), id: Number(id) };
  }
  return q;
}

/** The next page's URL: same filters, cursor at the last message of this page. */
function nextPageUrl(
  q: ListQuery,
  requestedSince: string | undefined,
  last: { updated_at: number; id: number },
): string {
  const params = new URLSearchParams();
  if (requestedSince !== undefined) params.set('updated_since', requestedSince);
  if (q.userId !== undefined) params.set('user_id', String(q.userId));
  params.set('limit', String(q.limit));
  params.set('after', `${last.updated_at},${last.id}`);
  return `/api/messages?${params.toString()}`;
}

function parseId(raw: string | string[] | undefined): number {
  if (typeof raw !== 'string' || !ID.test(raw)) throw new HttpError(404, 'message not found');
  return Number(raw);
}

function parseSource(body: unknown): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'expected a JSON object with a source');
  }
  const source = (body as Record<string, unknown>).source;
  if (typeof source !== 'string') throw new HttpError(400, 'source must be a string');
  if (source.trim().length === 0) throw new HttpError(400, 'source must not be empty');
  if (source.length > MAX_SOURCE_CHARS)
    throw new HttpError(400, `source must be at most ${MAX_SOURCE_CHARS} characters`);
  return source;
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

  router.get('/', auth.tokenOptional, async (req, res) => {
    const query = req.query as Record<string, unknown>;
    const q = parseListQuery(query);
    const keys = await listMessageKeys(db, q);
    let tail = ']}';
    const lastKey = keys[keys.length - 1];
    if (q.limit !== undefined && keys.length === q.limit && lastKey) {
      const next = nextPageUrl(q, query.updated_since as string | undefined, lastKey);
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

  router.post('/', auth.tokenRequired, async (req, res) => {
    const source = parseSource(req.body);
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

  router.get('/:id', auth.tokenOptional, async (req, res) => {
    const message = await findMessage(db, parseId(req.params.id));
    if (!message) throw new HttpError(404, 'message not found');
    res.json(toJson(message));
  });

  router.put('/:id', auth.tokenRequired, async (req, res) => {
    const id = parseId(req.params.id);
    const message = await findMessage(db, id);
    if (!message) throw new HttpError(404, 'message not found');
    if (message.user_id !== req.auth?.claims.user_id) throw new HttpError(403, 'not your message');
    const source = parseSource(req.body);
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
