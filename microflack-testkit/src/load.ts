// The load generator for tests: continuous load on a clock through the load balancer, as
// well-behaved clients make it, with every failure counted. Two mixes:
// - `chat` (the default): GET and POST /api/messages and POST /api/tokens with connected Socket.IO
//   readers; every acknowledged message is followed to the database and to the sockets.
// - `{ get: path }`: steady GETs of one path (the load-balancer tests, against backends that answer
//   {"instance": name}), counting which instance answered and when it first did.
// Requests go through node:http with one keep-alive agent, as a busy client's connections do
// (fetch costs about three times the CPU per request, and the LB tests run their backends in the
// same process). A 307 is followed on a new connection, up to 10 times as browsers would: an old
// HAProxy worker answers a request on a connection it still holds with 307 to the same URL, and a
// client sends it again to the current worker.
//
// Retry rules (what a careful client does, and what the figures "after retries" include):
// - GET: retried on a connection error of any kind (refused, reset, timeout) and on 502, 503 and
//   504, up to MAX_TRIES attempts with exponential backoff: reading twice does no harm.
// - POST /api/messages: sent with an Idempotency-Key (one per message, the same on every attempt),
//   as the browser client does, so it is retried as a GET is: a second attempt of a post that was
//   written answers with the message the first one made (docs/contracts/rest.md), never a copy.
// - POST /api/tokens: retried on a connection error of any kind and on 502, 503 and 504 too: a
//   token is made from the password alone, nothing is stored, so asking twice does no harm.
// Every failed attempt counts as a raw failure; a request fails after retries when its last
// attempt failed.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { backoffPolicy, retryDelays } from '@microflack/common';
import {
  IDEMPOTENCY_KEY_HEADER,
  RESYNC_AGAIN_MS,
  RESYNC_OVERLAP_SECONDS,
} from '@microflack/common/contract/constants';
import { io, type Socket } from 'socket.io-client';

export const MAX_TRIES = 5;
const MAX_REDIRECTS = 10;
/** A careful client's schedule between tries: 100 ms doubling up to 2 s, with jitter. */
const CLIENT_BACKOFF = backoffPolicy('load client', 100, 2000);
// Longer than the slow-instance fault (15 s): what waits on a stopped instance is counted, not cut.
const REQUEST_TIMEOUT_MS = 20000;
export const SLOW_MS = 3000;

export type Kind = 'getMessages' | 'postMessage' | 'postToken' | 'get';

export interface KindStats {
  /** Requests made (each may take several attempts). */
  sent: number;
  attempts: number;
  /** Attempts that failed: an error, or an answer other than the expected status. */
  rawFailures: number;
  /** Requests whose last attempt failed. */
  failedAfterRetries: number;
  /** Slowest attempt, in ms. */
  maxMs: number;
}

export interface Login {
  nickname: string;
  password: string;
  token: string;
}

export interface LoadOptions {
  url: string;
  /** Requests per second, all kinds together, on a clock (slow answers do not slow the load). */
  ratePerSecond: number;
  /** The chat mix (default) or steady GETs of one path. */
  mix?: 'chat' | { get: string };
  /** The chat mix's users (required for it). */
  logins?: Login[];
  /** Share of each kind in the chat mix; the rest of 1 after tokens and posts is GETs. */
  postShare?: number;
  tokenShare?: number;
  /** Socket.IO readers (chat mix; default 3). */
  sockets?: number;
  /** Tries per request (default MAX_TRIES); 1 makes every failed attempt final. */
  tries?: number;
  /** Per-attempt timeout, ms (default 20 s: longer than the slow-instance fault). */
  timeoutMs?: number;
}

export interface DeliveryReport {
  /** Messages acknowledged with 201. */
  acknowledged: number;
  /** Acknowledged but not found by GET /api/messages/:id afterwards. */
  lost: number[];
  /** Per socket: acknowledged messages seen neither live nor by a resync. */
  undelivered: number[][];
  /** Acknowledged messages a socket received only by its updated_since resync. */
  recoveredByResync: number;
  reconnects: number;
}

export interface LoadReport {
  seconds: number;
  kinds: Record<Kind, KindStats>;
  total: KindStats;
  /** The first failures, for messages. */
  samples: string[];
  /** Failed attempts by request and cause, e.g. `POST /api/messages 503`. */
  causes: Record<string, number>;
  /** Answers by who gave them (X-MicroFlack-Instance: a service, or `lb` for HAProxy's own). */
  answeredBy: Record<string, number>;
  /** Answers given by neither the path's own service nor the LB's 5xx JSON: must stay empty. */
  wrongBackend: string[];
  /** When each failed attempt was made (ms since the epoch), to measure failure windows. */
  failedAt: number[];
}

/** The service that owns a path through the LB (`/api/messages/3` -> messages). */
export function ownerOf(path: string): string {
  if (path.startsWith('/socket.io')) return 'socketio';
  const m = /^\/api\/([a-z]+)/.exec(path);
  return m ? (m[1] as string) : 'ui';
}

/**
 * Who answered (the service name from X-MicroFlack-Instance, `lb`, or `nobody` when the header is
 * missing) and whether that was the right backend for the path: its own service, or the LB's JSON
 * 5xx with Retry-After (a service with no live instance).
 */
export function whoAnswered(
  path: string,
  res: Answer,
  body: string,
): { by: string; right: boolean } {
  const header = res.headers.get('x-microflack-instance');
  const by = header === null ? 'nobody' : header === 'lb' ? 'lb' : (header.split('/')[0] as string);
  if (by === ownerOf(path)) return { by, right: true };
  const lbJson =
    by === 'lb' &&
    res.status >= 500 &&
    res.headers.get('retry-after') !== null &&
    (res.headers.get('content-type') ?? '').includes('application/json') &&
    body.startsWith('{"error":');
  return { by, right: lbJson };
}

/** What an answer says, as far as the load generator reads it. */
export interface Answer {
  status: number;
  headers: { get(name: string): string | null };
}

/** One HTTP exchange on `agent` (false: a connection of its own), bounded by `timeoutMs`. */
function exchange(
  url: string,
  opts: {
    method: string;
    headers: Record<string, string>;
    body?: string;
    timeoutMs: number;
    agent: http.Agent | false;
  },
): Promise<Answer & { text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method, headers: opts.headers, agent: opts.agent, timeout: opts.timeoutMs },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: {
              get: (name) => {
                const v = res.headers[name.toLowerCase()];
                return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
              },
            },
            text,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error('request timed out'), { code: 'TIMEOUT' })),
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

interface TrackedSocket {
  socket: Socket;
  live: Set<number>;
  recovered: Set<number>;
  newestSeen: number;
  connects: number;
}

/** The delay before retry number `retry` (1-based) on the client's schedule. */
function backoffMs(retry: number): number {
  const delays = retryDelays(CLIENT_BACKOFF);
  let ms = 0;
  for (let i = 0; i < retry; i++) ms = delays.next();
  return ms;
}

function errorCode(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string; message?: string } };
  return e?.cause?.code ?? e?.code ?? e?.name ?? 'error';
}

const emptyStats = (): KindStats => ({
  sent: 0,
  attempts: 0,
  rawFailures: 0,
  failedAfterRetries: 0,
  maxMs: 0,
});

export class LoadGenerator {
  readonly kinds: Record<Kind, KindStats> = {
    getMessages: emptyStats(),
    postMessage: emptyStats(),
    postToken: emptyStats(),
    get: emptyStats(),
  };
  /** Answers (2xx) per instance: the `instance` of a JSON body, else X-MicroFlack-Instance. */
  readonly seen = new Map<string, number>();
  /** When each instance first answered (Date.now()). */
  readonly firstSeen = new Map<string, number>();
  readonly samples: string[] = [];
  readonly causes: Record<string, number> = {};
  readonly answeredBy: Record<string, number> = {};
  readonly wrongBackend: string[] = [];
  readonly failedAt: number[] = [];
  /** Requests that took longer than SLOW_MS (for the slow-instance fault). */
  slow = 0;
  /** Messages acknowledged with 201, by id. */
  readonly acknowledged = new Set<number>();
  private readonly sockets: TrackedSocket[] = [];
  private inFlight = 0;
  /** No more requests on the clock (stop or abort). */
  private stopped = false;
  /** Sockets closed (checkDelivery done, or abort): no more resyncs. */
  private closed = false;
  private started = 0;
  private loop: Promise<void> | undefined;
  private seq = 0;

  private readonly getPath: string | undefined;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

  constructor(private readonly opts: LoadOptions) {
    const mix = opts.mix ?? 'chat';
    this.getPath = mix === 'chat' ? undefined : mix.get;
    if (mix === 'chat' && !opts.logins?.length) throw new Error('the chat mix needs logins');
  }

  /** Connects the sockets (chat mix), then starts the request clock. */
  async start(): Promise<this> {
    const sockets = this.getPath === undefined ? (this.opts.sockets ?? 3) : 0;
    for (let i = 0; i < sockets; i++) this.sockets.push(await this.connect());
    this.started = Date.now();
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    let i = 0;
    while (!this.stopped) {
      while (i < ((Date.now() - this.started) / 1000) * this.opts.ratePerSecond) {
        void this.one(i++);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private pick(i: number): Kind {
    if (this.getPath !== undefined) return 'get';
    // A fixed, interleaved pattern rather than random draws: the same mix in every run.
    const slot = (i * 0.6180339887) % 1;
    const tokenShare = this.opts.tokenShare ?? 0.05;
    const postShare = this.opts.postShare ?? 0.4;
    if (slot < tokenShare) return 'postToken';
    if (slot < tokenShare + postShare) return 'postMessage';
    return 'getMessages';
  }

  private async one(i: number): Promise<void> {
    const kind = this.pick(i);
    this.inFlight++;
    try {
      if (kind === 'get') {
        await this.request(kind, 'GET', this.getPath as string, {}, undefined, 200);
        return;
      }
      const logins = this.opts.logins as Login[];
      const login = logins[i % logins.length] as Login;
      if (kind === 'getMessages') {
        await this.request(kind, 'GET', '/api/messages?limit=20', {}, undefined, 200);
      } else if (kind === 'postMessage') {
        const res = await this.request(
          kind,
          'POST',
          '/api/messages',
          { authorization: `Bearer ${login.token}`, [IDEMPOTENCY_KEY_HEADER]: randomUUID() },
          { source: `load ${++this.seq} *at* ${Date.now()}` },
          201,
        );
        const id = (res?.body as { id?: unknown } | undefined)?.id;
        if (typeof id === 'number') this.acknowledged.add(id);
      } else {
        const basic = Buffer.from(`${login.nickname}:${login.password}`).toString('base64');
        await this.request(
          kind,
          'POST',
          '/api/tokens',
          { authorization: `Basic ${basic}` },
          undefined,
          200,
        );
      }
    } finally {
      this.inFlight--;
    }
  }

  /** One logical request with the retry rules above; undefined when it failed after retries. */
  async request(
    kind: Kind | undefined,
    method: 'GET' | 'POST',
    path: string,
    headers: Record<string, string>,
    body: unknown,
    expected: number,
  ): Promise<{ status: number; body: unknown } | undefined> {
    const stats = kind ? this.kinds[kind] : emptyStats();
    stats.sent++;
    const tries = this.opts.tries ?? MAX_TRIES;
    // What may be sent again whatever happened to the first attempt (see the rules above).
    const safe =
      method === 'GET' ||
      path === '/api/tokens' ||
      Object.keys(headers).some((h) => h.toLowerCase() === IDEMPOTENCY_KEY_HEADER);
    for (let attempt = 0; attempt < tries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, backoffMs(attempt)));
      stats.attempts++;
      const t0 = Date.now();
      let retriable: boolean;
      let what: string;
      try {
        const init = {
          method,
          headers: {
            accept: 'application/json',
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...headers,
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          timeoutMs: this.opts.timeoutMs ?? REQUEST_TIMEOUT_MS,
        };
        let url = this.opts.url + path;
        let res = await exchange(url, { ...init, agent: this.agent });
        // As browsers do, up to MAX_REDIRECTS times: during a reload a new connection may still be
        // taken by the stopping worker.
        for (let hops = 0; res.status === 307 && hops < MAX_REDIRECTS; hops++) {
          const location = res.headers.get('location');
          if (!location) break;
          url = new URL(location, url).href;
          res = await exchange(url, { ...init, agent: false });
        }
        const text = res.text;
        this.timed(stats, t0);
        const { by, right } = whoAnswered(path, res, text);
        this.answeredBy[by] = (this.answeredBy[by] ?? 0) + 1;
        if (!right && this.wrongBackend.length < 100) {
          this.wrongBackend.push(
            `+${((Date.now() - this.started) / 1000).toFixed(1)}s ${method} ${path}: ` +
              `${res.status} from ${res.headers.get('x-microflack-instance') ?? 'nobody'} ${text.slice(0, 80)}`,
          );
        }
        if (res.status === expected) {
          const parsed: unknown = text.startsWith('{') ? JSON.parse(text) : text;
          this.answeredByInstance(res, parsed);
          return { status: res.status, body: parsed };
        }
        what = `${res.status} from ${res.headers.get('x-microflack-instance') ?? 'nobody'} ${text.slice(0, 120)}`;
        this.cause(method, path, String(res.status));
        retriable = res.status === 503 || (safe && (res.status === 502 || res.status === 504));
      } catch (err) {
        this.timed(stats, t0);
        const code = errorCode(err);
        this.cause(method, path, code);
        what = `${code} ${(err as Error).message}`;
        retriable = safe || code === 'ECONNREFUSED';
      }
      stats.rawFailures++;
      this.failedAt.push(t0);
      this.sample(`${method} ${path} attempt ${attempt + 1}: ${what}`);
      if (!retriable) break;
    }
    stats.failedAfterRetries++;
    this.sample(`${method} ${path} FAILED after retries`);
    return undefined;
  }

  private answeredByInstance(res: Answer, body: unknown): void {
    const fromBody = (body as { instance?: unknown } | null)?.instance;
    const instance =
      typeof fromBody === 'string'
        ? fromBody
        : res.headers.get('x-microflack-instance')?.split('/')[1];
    if (!instance) return;
    this.seen.set(instance, (this.seen.get(instance) ?? 0) + 1);
    if (!this.firstSeen.has(instance)) this.firstSeen.set(instance, Date.now());
  }

  private timed(stats: KindStats, t0: number): void {
    const ms = Date.now() - t0;
    stats.maxMs = Math.max(stats.maxMs, ms);
    if (ms > SLOW_MS) this.slow++;
  }

  private cause(method: string, path: string, what: string): void {
    const key = `${method} ${path.replace(/\?.*/, '').replace(/\/\d+$/, '/:id')} ${what}`;
    this.causes[key] = (this.causes[key] ?? 0) + 1;
  }

  private sample(line: string): void {
    if (this.samples.length < 40) {
      this.samples.push(`+${((Date.now() - this.started) / 1000).toFixed(1)}s ${line}`);
    }
  }

  /** A reader as the browser client is: live updates, and an updated_since resync on reconnect. */
  private async connect(): Promise<TrackedSocket> {
    const t: TrackedSocket = {
      socket: io(this.opts.url, {
        transports: ['websocket'],
        reconnectionDelay: 200,
        reconnectionDelayMax: 1000,
        timeout: 5000,
      }),
      live: new Set(),
      recovered: new Set(),
      newestSeen: 0,
      connects: 0,
    };
    t.socket.on('updated_model', (data: { class?: string; model?: { id?: number } }) => {
      const m = data?.model as { id?: number; updated_at?: number } | undefined;
      if (data?.class !== 'Message' || typeof m?.id !== 'number') return;
      t.live.add(m.id);
      t.newestSeen = Math.max(t.newestSeen, m.updated_at ?? 0);
    });
    t.socket.on('connect', () => {
      t.connects++;
      if (t.connects === 1) return;
      // As the browser client: now, and once more from the same point when every instance is sure
      // to show what was written before the reconnect (a change shows through every instance
      // within 1 s: an answer from memory can be that old, and the event of a write made then
      // was missed while reconnecting).
      const since = Math.max(0, t.newestSeen - RESYNC_OVERLAP_SECONDS);
      void this.resync(t, since);
      const again = setTimeout(() => void this.resync(t, since), RESYNC_AGAIN_MS);
      again.unref();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('socket did not connect')), 10000);
      t.socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    t.newestSeen = Math.floor(Date.now() / 1000);
    return t;
  }

  /** Everything changed since `since`, following `next` pages. */
  private async resync(t: TrackedSocket, since: number): Promise<void> {
    // Also after stop(): a socket whose path died late may reconnect while checkDelivery waits,
    // and a reader catches up then as the browser does.
    if (this.closed) return;
    let path: string | undefined = `/api/messages?updated_since=${since}&limit=200`;
    while (path) {
      const res = await this.request(undefined, 'GET', path, {}, undefined, 200);
      if (!res) {
        if (this.closed) return;
        // The reader tries again shortly, as the browser does on its next sync.
        setTimeout(() => void this.resync(t, since), 1000);
        return;
      }
      const page = res.body as { messages: Array<{ id: number }>; next?: string };
      for (const m of page.messages) if (!t.live.has(m.id)) t.recovered.add(m.id);
      path = page.next;
    }
  }

  /** For cleanup after a failure: no more requests, resyncs or reconnects. */
  abort(): void {
    this.stopped = true;
    this.closed = true;
    for (const t of this.sockets) t.socket.close();
    this.agent.destroy();
  }

  /** Stops making requests and waits for those in flight. */
  async stop(): Promise<LoadReport> {
    this.stopped = true;
    await this.loop;
    const deadline = Date.now() + 30000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const seconds = (Date.now() - this.started) / 1000;
    // Steady GETs end here; the chat mix's connections serve checkDelivery first.
    if (this.getPath !== undefined) this.agent.destroy();
    const total = emptyStats();
    for (const s of Object.values(this.kinds)) {
      total.sent += s.sent;
      total.attempts += s.attempts;
      total.rawFailures += s.rawFailures;
      total.failedAfterRetries += s.failedAfterRetries;
      total.maxMs = Math.max(total.maxMs, s.maxMs);
    }
    return {
      seconds,
      kinds: this.kinds,
      total,
      samples: this.samples,
      causes: this.causes,
      answeredBy: this.answeredBy,
      wrongBackend: this.wrongBackend,
      failedAt: this.failedAt,
    };
  }

  /**
   * Every acknowledged message is stored, and every socket has it (live or by resync), waiting up
   * to `waitMs` for the last events. Closes the sockets.
   */
  async checkDelivery(waitMs = 10000): Promise<DeliveryReport> {
    const ids = [...this.acknowledged];
    const lost: number[] = [];
    for (let i = 0; i < ids.length; i += 20) {
      const batch = ids.slice(i, i + 20);
      const found = await Promise.all(
        batch.map((id) =>
          this.request(undefined, 'GET', `/api/messages/${id}`, {}, undefined, 200),
        ),
      );
      found.forEach((res, j) => {
        if (!res) lost.push(batch[j] as number);
      });
    }
    const missing = (t: TrackedSocket) =>
      ids.filter((id) => !t.live.has(id) && !t.recovered.has(id));
    const deadline = Date.now() + waitMs;
    while (this.sockets.some((t) => missing(t).length > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const report: DeliveryReport = {
      acknowledged: ids.length,
      lost,
      undelivered: this.sockets.map(missing),
      recoveredByResync: this.sockets.reduce(
        (n, t) => n + ids.filter((id) => !t.live.has(id) && t.recovered.has(id)).length,
        0,
      ),
      reconnects: this.sockets.reduce((n, t) => n + t.connects - 1, 0),
    };
    this.closed = true;
    for (const t of this.sockets) t.socket.close();
    this.agent.destroy();
    return report;
  }

  get running(): number {
    return this.inFlight;
  }
}

export function formatReport(name: string, r: LoadReport, d?: DeliveryReport): string {
  const k = (s: KindStats) =>
    `${s.sent} sent / ${s.rawFailures} failed raw / ${s.failedAfterRetries} failed after retries (max ${s.maxMs} ms)`;
  const lines = [
    `[${name}] ${r.total.sent} requests in ${r.seconds.toFixed(1)} s (${(r.total.sent / r.seconds).toFixed(0)}/s): ` +
      `${r.total.rawFailures} failed raw (${((100 * r.total.rawFailures) / Math.max(1, r.total.attempts)).toFixed(3)}% of ${r.total.attempts} attempts), ` +
      `${r.total.failedAfterRetries} failed after retries`,
    `  GET /api/messages   ${k(r.kinds.getMessages)}`,
    `  POST /api/messages  ${k(r.kinds.postMessage)}`,
    `  POST /api/tokens    ${k(r.kinds.postToken)}`,
  ].filter((_, i) => i === 0 || r.kinds.get.sent === 0);
  if (r.kinds.get.sent > 0) lines.push(`  GET                 ${k(r.kinds.get)}`);
  if (d) {
    lines.push(
      `  messages: ${d.acknowledged} acknowledged, ${d.lost.length} lost, ` +
        `${d.undelivered.reduce((n, u) => n + u.length, 0)} undelivered over ${d.undelivered.length} sockets, ` +
        `${d.recoveredByResync} recovered by resync, ${d.reconnects} socket reconnects`,
    );
  }
  lines.push(
    `  answered by: ${JSON.stringify(r.answeredBy)}; wrong backend: ${r.wrongBackend.length}`,
  );
  if (r.wrongBackend.length > 0)
    lines.push(`  wrong backend:\n    ${r.wrongBackend.slice(0, 12).join('\n    ')}`);
  if (Object.keys(r.causes).length > 0)
    lines.push(`  failed attempts by cause: ${JSON.stringify(r.causes)}`);
  if (r.samples.length > 0)
    lines.push(`  first failures:\n    ${r.samples.slice(0, 12).join('\n    ')}`);
  return lines.join('\n');
}

/** Registers a user and gets a token for it, retrying (the platform is settled, but be patient). */
export async function createLogin(url: string, nickname: string): Promise<Login> {
  const password = `pw-${nickname}-secret`;
  const call = async (path: string, init: RequestInit) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(url + path, { ...init, signal: AbortSignal.timeout(10000) });
        const body = (await res.json()) as Record<string, unknown>;
        if (res.status < 500 || attempt >= 5) return { status: res.status, body };
      } catch (err) {
        if (attempt >= 5) throw err;
      }
      await new Promise((r) => setTimeout(r, backoffMs(attempt + 1)));
    }
  };
  const created = await call('/api/users', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ nickname, password }),
  });
  if (created.status !== 201) throw new Error(`register ${nickname}: ${JSON.stringify(created)}`);
  const tok = await call('/api/tokens', {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${nickname}:${password}`).toString('base64')}`,
    },
  });
  if (tok.status !== 200) throw new Error(`token for ${nickname}: ${JSON.stringify(tok)}`);
  return { nickname, password, token: tok.body.token as string };
}

/** The p-th percentile (0-100) of the values, NaN when there are none. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/**
 * Every socket got every acknowledged message, live or by a resync. The failure names every
 * socket's misses: one missed by all was lost at its publisher, one missed by a single socket on
 * that socket's way.
 */
export function assertAllDelivered(d: DeliveryReport): void {
  for (const [i, u] of d.undelivered.entries()) {
    assert.deepEqual(
      u,
      [],
      `socket ${i} never got these messages (per socket: ${JSON.stringify(d.undelivered)}, ` +
        `${d.reconnects} reconnects, ${d.recoveredByResync} recovered by resync)`,
    );
  }
}
