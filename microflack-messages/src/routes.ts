// The /api/messages routes: read, post and edit messages.
import { Router } from 'express';
import { HttpError, type Auth, type Events, type Knex } from '@microflack/common';
import {
  findMessage,
  insertMessage,
  listMessages,
  messageUrl,
  nowSeconds,
  SECONDS_PER_DAY,
  toJson,
  updateSource,
  type ListQuery,
} from './messages.js';
import type { Previewer } from './previewer.js';
import { renderMarkdown } from './render.js';

export const MAX_SOURCE_CHARS = 4000;
export const MAX_PAGE_SIZE = 1000;

export interface RouteDeps {
  db: Knex;
  auth: Auth;
  events: Events;
  previewer: Previewer;
}

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

export function messagesRouter({ db, auth, events, previewer }: RouteDeps): Router {
  const router = Router();

  router.get('/', auth.tokenOptional, async (req, res) => {
    const query = req.query as Record<string, unknown>;
    const q = parseListQuery(query);
    const rows = await listMessages(db, q);
    const body: { messages: ReturnType<typeof toJson>[]; next?: string } = {
      messages: rows.map(toJson),
    };
    const last = rows[rows.length - 1];
    if (q.limit !== undefined && rows.length === q.limit && last) {
      body.next = nextPageUrl(q, query.updated_since as string | undefined, last);
    }
    res.json(body);
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
