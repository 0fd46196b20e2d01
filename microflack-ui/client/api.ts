// The REST API as the client sees it: same origin, JSON, a deadline on every call.
// The models are the platform contract's (types only: nothing of it is bundled).
export type { Message, Room, User } from '@microflack/common/contract';
import type { Message } from '@microflack/common/contract';

export interface ApiResponse<T> {
  status: number;
  body: T;
}

const TIMEOUT_MS = 10000;
// A limit on how many pages one list refresh follows, so a broken link cannot loop for ever.
const MAX_PAGES = 50;

export interface CallOptions {
  token?: string | null;
  basic?: { username: string; password: string };
  body?: unknown;
  /** Extra request headers (an Idempotency-Key). */
  headers?: Record<string, string>;
}

/** Throws only when no answer came (network down, timeout); any HTTP status is returned. */
export async function call<T = Record<string, unknown>>(
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  if (opts.basic) {
    const raw = new TextEncoder().encode(`${opts.basic.username}:${opts.basic.password}`);
    headers.Authorization = `Basic ${btoa(String.fromCharCode(...raw))}`;
  }
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    credentials: 'same-origin',
    // GETs revalidate what the browser kept (If-None-Match, 304 without a body when unchanged);
    // nothing else is kept.
    cache: method === 'GET' ? 'no-cache' : 'no-store',
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  let body: unknown = {};
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { error: text.slice(0, 200) };
    }
  }
  return { status: res.status, body: body as T };
}

export function errorMessage(res: ApiResponse<unknown>): string {
  const error = (res.body as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? error : `request failed (${res.status})`;
}

/**
 * A list resource (users or messages), changed after `since` when given, following `next` links
 * when the service pages its answer. Returns the status of the first failing page, if any.
 */
export async function fetchList<T>(
  resource: 'users' | 'messages',
  since: number | undefined,
  token: string | null,
  query: Record<string, string> = {},
): Promise<{ status: number; items: T[] }> {
  const items: T[] = [];
  const params = new URLSearchParams(query);
  if (since !== undefined) params.set('updated_since', String(Math.max(0, since)));
  const search = params.toString();
  let path: string | undefined = `/api/${resource}` + (search ? `?${search}` : '');
  for (let page = 0; path && page < MAX_PAGES; page++) {
    const res: ApiResponse<Record<string, unknown>> = await call('GET', path, { token });
    if (res.status !== 200) return { status: res.status, items };
    const list = res.body[resource];
    if (Array.isArray(list)) items.push(...(list as T[]));
    // messages answers `next` when a page is full; `_links.next` is accepted as well.
    const next = res.body.next ?? (res.body._links as { next?: unknown } | undefined)?.next;
    // Only same-origin API paths are followed.
    path = typeof next === 'string' && next.startsWith(`/api/${resource}`) ? next : undefined;
  }
  return { status: 200, items };
}

/** The most a message's source may be (UTF-16 code units, as the messages service counts). */
export const MAX_SOURCE_LENGTH = 4000;
/** History pages: what one screen shows and a little more. */
export const HISTORY_PAGE = 50;

/**
 * One page of a room's history, oldest first: the newest messages (`before` undefined) or those
 * below a message id. `more` is true when an older page may exist (the page was full).
 */
export async function fetchHistory(
  roomId: number,
  before: number | undefined,
  token: string | null,
): Promise<{ status: number; messages: Message[]; more: boolean }> {
  const params = new URLSearchParams({
    room_id: String(roomId),
    before: before === undefined ? 'latest' : String(before),
    limit: String(HISTORY_PAGE),
  });
  const res = await call<{ messages?: Message[]; next?: string }>(
    'GET',
    `/api/messages?${params.toString()}`,
    { token },
  );
  const messages = res.status === 200 && Array.isArray(res.body.messages) ? res.body.messages : [];
  return { status: res.status, messages, more: typeof res.body.next === 'string' };
}
