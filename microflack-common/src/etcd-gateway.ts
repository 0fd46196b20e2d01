// An etcd v3 client over etcd's JSON gateway (HTTP/1.1, node:http only), for the part of the
// etcd3 library MicroFlack uses. Why: etcd3 brings gRPC and protobufjs, some 15 MB of private
// memory in every process (this: about 2.5 MB), for a handful of calls, a few watches and leases.
// The gateway speaks the same API (keys and values base64, int64 as strings, default values left
// out of answers); watches and lease keep-alives are its streaming endpoints.
import { EventEmitter } from 'node:events';
import http from 'node:http';

export interface EtcdOptions {
  /** Members, as `http://host:port` (or `host:port`). */
  hosts: string[];
  /** Deadline of every unary call, per member tried. */
  callTimeoutMs?: number;
  /** How long a member that failed a call is skipped when there are others. */
  memberPauseMs?: number;
  /** Delays between attempts to reopen a broken watch: doubling from initialMs up to maxMs. */
  watchBackoff?: { initialMs: number; maxMs: number };
}

type Revisions = 'create_revision' | 'mod_revision' | 'version' | 'lease';
/** A key as a watch delivers it (the key relative to the namespace watched). */
export type KeyValue = { key: Buffer; value: Buffer } & Record<Revisions, string>;

// The gateway's JSON, as far as this client reads it (any field may be left out).
type RawKv = Partial<Record<'key' | 'value' | Revisions, string>>;
type Header = { revision?: string };
type RangeReply = { header?: Header; kvs?: RawKv[] };
type TxnReply = RangeReply & { succeeded?: boolean; responses?: { response_range?: RangeReply }[] };
type LeaseReply = { ID?: string; TTL?: string };
type WatchResult = RangeReply & {
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: { type?: 'PUT' | 'DELETE'; kv?: RawKv }[];
};
type Member = { host: string; port: number; label: string; pausedUntil: number };

/** How an idle watch checks that its member still answers (see Watcher). */
const PROBE_IDLE_MS = 2000;
// gRPC codes worth another try, on another member (as etcd3 classifies them): cancelled, unknown,
// deadline exceeded, resource exhausted, aborted, internal, unavailable (no leader, timeouts).
const RECOVERABLE_CODES = new Set([1, 2, 4, 8, 10, 13, 14]);
const NETWORK_ERROR =
  /^(ECONN(REFUSED|RESET|ABORTED)|EPIPE|ETIMEDOUT|E(HOST|NET)UNREACH|EAI_AGAIN|ENOTFOUND)$/;
const ZERO = Buffer.from([0]);

export class EtcdError extends Error {
  override name = 'EtcdError';
  /** The request failed on a kept-alive socket before any answer: the member may be fine. */
  staleSocket = false;
  constructor(
    message: string,
    /** A network error, a timeout or a server-side failure: another try may succeed. */
    readonly recoverable: boolean,
    /** The gRPC status code, when etcd gave one. */
    readonly code?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Network errors, timeouts and 5xx/unavailable answers: what another member or a retry may fix. */
export function isRecoverableError(err: unknown): boolean {
  if (err instanceof EtcdError) return err.recoverable;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && NETWORK_ERROR.test(code);
}

const leaseGone = (err: unknown) =>
  err instanceof EtcdError && err.code === 5 && /lease not found/.test(err.message);
const closedError = () => new EtcdError('etcd client closed', false);
const toBuf = (v: string | Buffer) => (typeof v === 'string' ? Buffer.from(v) : v);
const b64 = (b: Buffer) => b.toString('base64');
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64');

/** The first key after every key that starts with p (etcd's range_end for a prefix). */
function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return ZERO; // all 0xff: no upper bound
}

function toKv(raw: RawKv | undefined, nsLength: number): KeyValue {
  return {
    key: unb64(raw?.key).subarray(nsLength),
    value: unb64(raw?.value),
    create_revision: raw?.create_revision ?? '0',
    mod_revision: raw?.mod_revision ?? '0',
    version: raw?.version ?? '0',
    lease: raw?.lease ?? '0',
  };
}

/** The error a gateway answer carries: unary `{error, message, code}`, streams `{error: {...}}`. */
function answerError(where: string, status: number, text: string): EtcdError | undefined {
  let body: Record<string, unknown> | undefined;
  try {
    body = JSON.parse(text.split('\n', 1)[0] as string) as Record<string, unknown>;
  } catch {
    body = undefined;
  }
  const inner = body?.error;
  if (status < 400 && inner === undefined) {
    return body ? undefined : new EtcdError(`etcd ${where}: unreadable answer`, true);
  }
  const e = (typeof inner === 'object' && inner !== null ? inner : body) as
    { message?: string; code?: number; grpc_code?: number } | undefined;
  const code = e?.grpc_code ?? e?.code;
  const message = e?.message ?? (text.trim().slice(0, 200) || 'no details');
  const recoverable = code !== undefined ? RECOVERABLE_CODES.has(code) : status >= 500;
  const codeText = code !== undefined ? `, gRPC code ${code}` : '';
  return new EtcdError(`etcd ${where}: ${message} (HTTP ${status}${codeText})`, recoverable, code);
}

function networkError(where: string, err: Error): EtcdError {
  if (err instanceof EtcdError) return err;
  return new EtcdError(`etcd ${where}: ${err.message}`, true, 14, { cause: err });
}

/** A POST with a JSON body, answered as it comes (the caller reads the response). */
function postJson(m: Member, path: string, body: object, agent: http.Agent | false) {
  const payload = JSON.stringify(body);
  const headers = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  };
  const req = http.request({ host: m.host, port: m.port, path, method: 'POST', agent, headers });
  req.end(payload);
  return req;
}

/** @internal What every view of one client shares: members, HTTP agent, what close() ends. */
export class Core {
  readonly members: Member[];
  readonly callTimeoutMs: number;
  readonly memberPauseMs: number;
  readonly watchBackoff: { initialMs: number; maxMs: number };
  readonly watchers = new Set<Watcher>();
  readonly leases = new Set<Lease>();
  private readonly aborts = new Set<(err: Error) => void>();
  // Kept-alive sockets: a call costs one round trip, not a TCP handshake. Bounded per member;
  // calls beyond wait in the agent's queue (within their deadline).
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 4 });
  private next = 0;
  closed = false;

  constructor(opts: EtcdOptions) {
    if (opts.hosts.length === 0) throw new RangeError('etcd: no hosts given');
    this.members = opts.hosts.map((h) => {
      const url = new URL(h.includes('://') ? h : `http://${h}`);
      if (url.protocol !== 'http:') throw new RangeError(`etcd: only http:// members (${h})`);
      const port = Number(url.port) || 2379;
      return { host: url.hostname, port, label: `${url.hostname}:${port}`, pausedUntil: 0 };
    });
    this.callTimeoutMs = opts.callTimeoutMs ?? 3000;
    this.memberPauseMs = opts.memberPauseMs ?? 2000;
    this.watchBackoff = opts.watchBackoff ?? { initialMs: 100, maxMs: 2000 };
  }

  /** The next member in turn among those not paused (all of them if every one is). */
  pick(avoid?: Member): Member {
    const now = Date.now();
    const others = this.members.filter((m) => m !== avoid);
    const healthy = others.filter((m) => m.pausedUntil <= now);
    const pool = healthy.length > 0 ? healthy : others.length > 0 ? others : this.members;
    return pool[this.next++ % pool.length] as Member;
  }

  pause(m: Member): void {
    if (this.members.length > 1) m.pausedUntil = Date.now() + this.memberPauseMs;
  }

  /** A unary call; a recoverable failure pauses the member and is tried once on another. */
  async call<T>(path: string, body: object): Promise<T> {
    const first = this.pick();
    try {
      return await this.post<T>(first, path, body);
    } catch (err) {
      if (this.closed || !isRecoverableError(err)) throw err;
      this.pause(first);
      // One member: only a call that died on a socket the server had closed is worth repeating.
      if (this.members.length < 2 && !(err as EtcdError).staleSocket) throw err;
      const second = this.members.length < 2 ? first : this.pick(first);
      try {
        return await this.post<T>(second, path, body);
      } catch (err2) {
        if (isRecoverableError(err2)) this.pause(second);
        throw err2;
      }
    }
  }

  post<T>(m: Member, path: string, body: object): Promise<T> {
    const where = `${m.label}${path}`;
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(closedError());
      const req = postJson(m, path, body, this.agent);
      let answered = false;
      const finish = (err: Error | undefined, value?: T) => {
        if (!this.aborts.delete(finish)) return; // settled already
        clearTimeout(timer);
        if (!err) return resolve(value as T);
        req.destroy();
        reject(err);
      };
      this.aborts.add(finish);
      // A member that takes connections but does not answer (stopped, cut off) must not hang us.
      const timer = setTimeout(
        () =>
          finish(new EtcdError(`etcd ${where}: no answer in ${this.callTimeoutMs} ms`, true, 4)),
        this.callTimeoutMs,
      );
      req.on('error', (err) => {
        const e = networkError(where, err);
        e.staleSocket = req.reusedSocket && !answered;
        finish(e);
      });
      req.on('response', (res) => {
        answered = true;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('close', () => {
          if (!res.complete)
            return finish(new EtcdError(`etcd ${where}: answer cut off`, true, 14));
          const err = answerError(where, res.statusCode ?? 0, text);
          if (err) return finish(err);
          const parsed = JSON.parse(text.split('\n', 1)[0] as string) as { result?: T };
          // Streaming endpoints (lease keep-alive) wrap each message in {"result": ...}.
          finish(undefined, (parsed.result ?? parsed) as T);
        });
      });
    });
  }

  close(): void {
    this.closed = true;
    for (const w of [...this.watchers]) void w.cancel();
    for (const l of [...this.leases]) l.release();
    for (const abort of [...this.aborts]) abort(closedError());
    this.agent.destroy();
  }
}

type PutBuilder = { value(v: string | Buffer): Promise<void> };
type WatchBuilder = { create(): Promise<Watcher>; watcher(): Watcher };
type Range = { key: string; range_end?: string };

/** The API, on keys under `prefix`; the client itself is the namespace with the empty prefix. */
export class Namespace {
  constructor(
    /** @internal */ readonly core: Core,
    readonly prefix: Buffer,
  ) {}

  put(key: string): PutBuilder {
    return { value: (v) => this.putKey(key, v) };
  }

  get(key: string): { string(): Promise<string | null> } {
    return {
      string: async () => {
        const r = await this.core.call<RangeReply>('/v3/kv/range', { key: b64(this.full(key)) });
        const kv = r.kvs?.[0];
        return kv ? unb64(kv.value).toString() : null;
      },
    };
  }

  getAll() {
    const read = async (p: string) => {
      const r = await this.core.call<RangeReply>('/v3/kv/range', this.span(p));
      return (r.kvs ?? []).map((kv) => toKv(kv, this.prefix.length));
    };
    return {
      prefix: (p: string) => ({
        strings: async () =>
          Object.fromEntries((await read(p)).map((kv) => [kv.key.toString(), kv.value.toString()])),
        keys: async () => (await read(p)).map((kv) => kv.key.toString()),
      }),
    };
  }

  delete() {
    const del = async (body: object): Promise<void> => {
      await this.core.call('/v3/kv/deleterange', body);
    };
    return {
      key: (k: string) => del({ key: b64(this.full(k)) }),
      prefix: (p: string) => del(this.span(p)),
      all: () => del(this.span('')),
    };
  }

  lease(ttlSeconds: number, opts: { autoKeepAlive?: boolean } = {}): Lease {
    return new Lease(this.core, this, ttlSeconds, opts.autoKeepAlive !== false);
  }

  watch(): { prefix(p: string): WatchBuilder; key(k: string): WatchBuilder } {
    const builder = (range: Range): WatchBuilder => {
      const watcher = () => new Watcher(this.core, this.prefix.length, range);
      return { watcher, create: () => watcher().created() };
    };
    return {
      prefix: (p) => builder(this.span(p)),
      key: (k) => builder({ key: b64(this.full(k)) }),
    };
  }

  election(name: string, ttlSeconds = 60): Election {
    return new Election(this, name, ttlSeconds);
  }

  namespace(prefix: string): Namespace {
    return new Namespace(this.core, Buffer.concat([this.prefix, Buffer.from(prefix)]));
  }

  /** @internal */
  full(key: string | Buffer): Buffer {
    return Buffer.concat([this.prefix, toBuf(key)]);
  }

  /** @internal The keys that start with p, as a request's range. */
  span(p: string): Required<Range> {
    const key = this.full(p);
    // The empty prefix of the whole keyspace: from \0, no end.
    const [from, end] = key.length > 0 ? [key, prefixEnd(key)] : [ZERO, ZERO];
    return { key: b64(from), range_end: b64(end) };
  }

  /** @internal */
  async putKey(key: string, value: string | Buffer, lease?: string): Promise<void> {
    await this.core.call('/v3/kv/put', {
      key: b64(this.full(key)),
      value: b64(toBuf(value)),
      ...(lease ? { lease } : {}),
    });
  }
}

export class EtcdClient extends Namespace {
  constructor(opts: EtcdOptions) {
    super(new Core(opts), Buffer.alloc(0));
  }

  readonly maintenance = {
    status: (): Promise<unknown> => this.core.call('/v3/maintenance/status', {}),
  };

  /** Ends watches and keep-alives and aborts calls in flight: nothing keeps the process up. */
  close(): void {
    this.core.close();
  }
}

/**
 * A lease, granted on the first put (or grant()). With autoKeepAlive, kept alive every TTL/3;
 * 'lost' once when etcd says it is gone or when no keep-alive got through for a whole TTL.
 */
export class Lease extends EventEmitter {
  private id: Promise<string> | undefined;
  private state: 'pending' | 'alive' | 'done' = 'pending';
  private lostError: Error | undefined;
  private keepTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly core: Core,
    private readonly ns: Namespace,
    private ttl: number,
    private readonly autoKeepAlive: boolean,
  ) {
    super();
    if (!(ttl >= 1)) throw new RangeError(`etcd lease TTL must be at least 1 s, got ${ttl}`);
  }

  grant(): Promise<string> {
    if (!this.id) {
      const granting = this.doGrant();
      // As in etcd3, a lease that could not be granted is lost: its owner starts over.
      granting.catch((err: Error) => this.lose(err));
      this.id = granting;
    }
    return this.id;
  }

  put(key: string): PutBuilder {
    return {
      value: async (v) => {
        const id = await this.grant();
        if (this.lostError) throw this.lostError;
        try {
          await this.ns.putKey(key, v, id);
        } catch (err) {
          if (leaseGone(err)) this.lose(err as Error);
          throw err;
        }
      },
    };
  }

  /** Ends the lease in etcd, which deletes every key attached to it. */
  async revoke(): Promise<void> {
    const granting = this.id;
    this.stop();
    this.lostError ??= new EtcdError('etcd lease revoked', false);
    const id = await granting?.catch(() => undefined);
    if (id === undefined) return;
    try {
      await this.core.call('/v3/lease/revoke', { ID: id });
    } catch (err) {
      if (!leaseGone(err)) throw err;
    }
  }

  /** Stops the keep-alives without revoking: the lease ends in etcd after its TTL. */
  release(): void {
    this.stop();
  }

  revoked(): boolean {
    return this.state === 'done';
  }

  private async doGrant(): Promise<string> {
    if (this.state === 'done') throw this.lostError ?? new EtcdError('etcd lease released', false);
    const sentAt = Date.now();
    const r = await this.core.call<LeaseReply>('/v3/lease/grant', { TTL: this.ttl });
    if (!r.ID) throw new EtcdError('etcd lease grant: no lease id in the answer', false);
    // etcd may raise a short TTL to its minimum; keep-alives go by the TTL it granted.
    this.ttl = Math.max(this.ttl, Number(r.TTL ?? 0));
    if (this.state === 'pending') {
      this.state = 'alive';
      if (this.autoKeepAlive) {
        this.core.leases.add(this);
        this.armExpiry(sentAt);
        this.schedule(this.interval());
      }
    }
    return r.ID;
  }

  private interval(): number {
    return (this.ttl * 1000) / 3; // as etcd's Go client
  }

  private schedule(ms: number): void {
    clearTimeout(this.keepTimer);
    this.keepTimer = setTimeout(() => void this.keepAlive(), ms);
  }

  /** etcd forgets the lease TTL after the last keep-alive it got, at the latest when we sent it. */
  private armExpiry(sentAt: number): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(
      () =>
        this.lose(new EtcdError(`etcd lease: no keep-alive got through in ${this.ttl} s`, false)),
      sentAt + this.ttl * 1000 - Date.now(),
    );
  }

  private async keepAlive(): Promise<void> {
    const id = await this.id;
    const sentAt = Date.now();
    try {
      const r = await this.core.call<LeaseReply>('/v3/lease/keepalive', { ID: id });
      if (this.state !== 'alive') return;
      if (!(Number(r.TTL ?? 0) > 0)) {
        return this.lose(new EtcdError(`etcd lease ${id} expired or revoked`, false, 5));
      }
      this.armExpiry(sentAt);
      this.emit('keepaliveSucceeded', r);
      this.schedule(this.interval());
    } catch (err) {
      if (this.state !== 'alive') return;
      if (leaseGone(err)) return this.lose(err as Error);
      this.emit('keepaliveFailed', err);
      this.schedule(Math.min(this.interval(), 500));
    }
  }

  private stop(): void {
    this.state = 'done';
    clearTimeout(this.keepTimer);
    clearTimeout(this.expiryTimer);
    this.core.leases.delete(this);
  }

  private lose(err: Error): void {
    if (this.lostError) return;
    this.lostError = err;
    const wasDone = this.state === 'done';
    this.stop();
    // A released lease or a closed client has no one to tell.
    if (!wasDone && !this.core.closed) this.emit('lost', err);
  }
}

/**
 * One watch over one HTTP stream. It reconnects by itself (another member if there are several)
 * and resumes after the last revision it delivered, so no event is lost across an outage.
 * Events: 'connected' (at creation and after each outage), 'disconnected' (once per outage),
 * 'put'/'delete' (KeyValue), 'data' (the gateway's raw result), 'error' (the watch has ended).
 */
export class Watcher extends EventEmitter {
  private member: Member | undefined;
  private req: http.ClientRequest | undefined;
  /** The revision to resume from; undefined: from now on. */
  private nextRev: bigint | undefined;
  /** Events below this revision were delivered before the stream broke. */
  private floor = 0n;
  private backoffMs: number;
  private down = false;
  private ended = false;
  private generation = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Until etcd confirmed the watch, its deadline; then the idle probe's. */
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly core: Core,
    private readonly nsLength: number,
    private readonly range: Range,
    startRevision?: bigint,
  ) {
    super();
    this.nextRev = startRevision;
    this.backoffMs = core.watchBackoff.initialMs;
    if (core.closed) {
      this.ended = true;
      return;
    }
    core.watchers.add(this);
    this.connect();
  }

  /** The member the watch is on now (host:port). */
  get host(): string | undefined {
    return this.member?.label;
  }

  /** Ends the watch for good: no more events, no reconnects. */
  cancel(): Promise<void> {
    this.end();
    return Promise.resolve();
  }

  /** @internal Resolves at etcd's first `created`; rejects if the watch ends before. */
  created(): Promise<Watcher> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        this.off('connected', ok).off('error', done).off('end', ended);
        return err ? reject(err) : resolve(this);
      };
      const ok = () => done();
      const ended = () => done(new EtcdError('etcd watch ended before it was created', false));
      if (this.ended) return ended();
      this.on('connected', ok).on('error', done).on('end', ended);
    });
  }

  private connect(): void {
    if (this.ended) return;
    const gen = ++this.generation;
    const m = (this.member = this.core.pick());
    const where = `${m.label}/v3/watch`;
    this.floor = this.nextRev ?? 0n;
    const request: Range & { start_revision?: string } = { ...this.range };
    if (this.nextRev !== undefined) request.start_revision = String(this.nextRev);
    const fail = (err: Error) => gen === this.generation && this.broken(err);
    // Its own connection (agent: false): the stream holds it for as long as the watch lives.
    const req = (this.req = postJson(m, '/v3/watch', { create_request: request }, false));
    this.timer = setTimeout(
      () =>
        fail(new EtcdError(`etcd ${where}: not created in ${this.core.callTimeoutMs} ms`, true)),
      this.core.callTimeoutMs,
    );
    req.on('error', (err) => fail(networkError(where, err)));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (res.statusCode !== 200) return;
        // One JSON message per line.
        for (
          let i = text.indexOf('\n');
          i >= 0 && gen === this.generation;
          i = text.indexOf('\n')
        ) {
          const line = text.slice(0, i);
          text = text.slice(i + 1);
          if (line.trim()) this.onMessage(line, gen, where);
        }
      });
      res.on('close', () => {
        const status = res.statusCode ?? 0;
        const err = status === 200 ? undefined : answerError(where, status, text);
        fail(err ?? new EtcdError(`etcd ${where}: stream ended`, true));
      });
    });
  }

  private onMessage(line: string, gen: number, where: string): void {
    let r: WatchResult | undefined;
    try {
      r = (JSON.parse(line) as { result?: WatchResult }).result;
    } catch {
      r = undefined;
    }
    // Not a result: an error message in the stream (or a line that is not JSON).
    if (!r) return this.broken(answerError(where, 200, line) ?? new EtcdError(line, true));
    this.armProbe(gen);
    if (r.canceled) {
      if (r.compact_revision && r.compact_revision !== '0') {
        // The history to resume from is compacted: watch from now on. The 'connected' that
        // follows tells callers to read everything again, which covers the gap.
        this.nextRev = undefined;
        this.teardown();
        return this.connect();
      }
      const reason = r.cancel_reason ?? 'no reason given';
      return this.end(new EtcdError(`etcd ${where}: watch cancelled (${reason})`, false));
    }
    if (r.created) {
      this.backoffMs = this.core.watchBackoff.initialMs;
      this.nextRev ??= BigInt(r.header?.revision ?? '0') + 1n;
      this.down = false;
      this.emit('connected', r);
      return;
    }
    const events = r.events ?? [];
    if (events.length === 0) {
      // A progress notification: every event up to its revision has been sent.
      const rev = BigInt(r.header?.revision ?? '0') + 1n;
      if (this.nextRev === undefined || rev > this.nextRev) this.nextRev = rev;
      return;
    }
    this.emit('data', r);
    for (const ev of events) {
      if (this.ended || gen !== this.generation) return;
      const kv = toKv(ev.kv, this.nsLength);
      const rev = BigInt(kv.mod_revision);
      if (rev < this.floor) continue; // delivered before the reconnect
      this.nextRev = rev + 1n;
      this.emit(ev.type === 'DELETE' ? 'delete' : 'put', kv);
    }
  }

  /**
   * A member that stops answering (stopped, cut off from the others) leaves the stream open and
   * silent. While idle, a linearizable read on that member every 2 s tells: it needs a quorum, so
   * it also fails on a member that is up but cut off (whose watch would miss every new write).
   */
  private armProbe(gen: number): void {
    clearTimeout(this.timer);
    const m = this.member as Member;
    this.timer = setTimeout(() => {
      this.core.post(m, '/v3/kv/range', { key: b64(ZERO), limit: 1, keys_only: true }).then(
        () => gen === this.generation && this.armProbe(gen),
        (err: Error) =>
          gen === this.generation &&
          this.broken(new EtcdError(`probe: ${err.message}`, true, 14, { cause: err })),
      );
    }, PROBE_IDLE_MS);
  }

  private broken(err: Error): void {
    this.teardown();
    if (this.ended) return;
    if (!isRecoverableError(err)) return this.end(err);
    if (this.member) this.core.pause(this.member);
    if (!this.down) {
      this.down = true;
      this.emit('disconnected', err);
    }
    // Jittered within [d/2, d), so that many processes do not come back in step.
    const d = this.backoffMs;
    this.backoffMs = Math.min(this.core.watchBackoff.maxMs, d * 2);
    this.retryTimer = setTimeout(() => this.connect(), d / 2 + (Math.random() * d) / 2);
  }

  private teardown(): void {
    this.generation++;
    clearTimeout(this.timer);
    this.req?.destroy();
    this.req = undefined;
  }

  private end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.teardown();
    clearTimeout(this.retryTimer);
    this.core.watchers.delete(this);
    // Nobody listening for 'error' must not crash the process (EventEmitter would throw).
    if (err && this.listenerCount('error') > 0) this.emit('error', err);
    this.emit('end');
  }
}

/** etcd3's election, same keys: `election/<name>/<lease id>` = value, attached to the lease. */
export class Election {
  private readonly ns: Namespace;

  constructor(
    parent: Namespace,
    readonly name: string,
    readonly ttl = 60,
  ) {
    this.ns = parent.namespace(`election/${name}/`);
  }

  campaign(value: string): Campaign {
    return new Campaign(this.ns, value, this.ttl);
  }
}

/**
 * Elected when its key has the lowest create_revision under the election prefix: it waits for
 * the deletion of the key created just before its own, then looks again. 'error' (and no more
 * 'elected') when its lease is lost or the campaign fails.
 */
export class Campaign extends EventEmitter {
  private readonly lease: Lease;
  private finished = false;
  private waiting: Watcher | undefined;

  constructor(
    private readonly ns: Namespace,
    value: string,
    ttl: number,
  ) {
    super();
    this.lease = ns.lease(ttl);
    this.lease.on('lost', (err: Error) => this.fail(err));
    this.run(Buffer.from(value)).catch((err: Error) => this.fail(err));
  }

  /** Deletes its key (by revoking its lease): the next campaigner is elected at once. */
  async resign(): Promise<void> {
    if (this.finished && this.lease.revoked()) return;
    this.finished = true;
    await this.waiting?.cancel();
    await this.lease.revoke();
  }

  private fail(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    void this.waiting?.cancel();
    // A lease that may still exist would keep its key, and so the leadership, until its TTL.
    this.lease.revoke().catch(() => undefined);
    if (this.listenerCount('error') > 0 && !this.ns.core.closed) this.emit('error', err);
  }

  private async run(value: Buffer): Promise<void> {
    const id = await this.lease.grant();
    if (this.finished) return;
    const key = b64(this.ns.full(id));
    const r = await this.ns.core.call<TxnReply>('/v3/kv/txn', {
      compare: [{ key, target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
      success: [{ request_put: { key, value: b64(value), lease: id } }],
      failure: [{ request_range: { key } }],
    });
    if (this.finished) return;
    // Already there: a retried txn whose first try went through; keep its place in line.
    const mine = r.succeeded ? undefined : r.responses?.[0]?.response_range?.kvs?.[0];
    const myRev = BigInt(mine?.create_revision ?? r.header?.revision ?? '0');
    if (mine && !unb64(mine.value).equals(value)) await this.ns.putKey(id, value, id);
    while (!this.finished) {
      const before = await this.ns.core.call<RangeReply>('/v3/kv/range', {
        ...this.ns.span(''),
        max_create_revision: String(myRev - 1n),
        sort_order: 'DESCEND',
        sort_target: 'CREATE',
        limit: 1,
        keys_only: true,
      });
      const predecessor = before.kvs?.[0]?.key;
      if (predecessor === undefined) break;
      await this.waitForDelete(predecessor);
    }
    if (!this.finished) this.emit('elected');
  }

  private async waitForDelete(key: string): Promise<void> {
    const read = () => this.ns.core.call<RangeReply>('/v3/kv/range', { key, keys_only: true });
    const r = await read();
    if (!r.kvs?.length || this.finished) return;
    const from = BigInt(r.header?.revision ?? '0') + 1n;
    const w = new Watcher(this.ns.core, this.ns.prefix.length, { key }, from);
    this.waiting = w;
    try {
      await new Promise<void>((resolve, reject) => {
        w.on('delete', () => resolve());
        w.on('end', () => resolve());
        w.on('error', reject);
        // A resume point lost to compaction may have taken the delete with it: look again.
        w.on('connected', () =>
          read().then(
            (x) => !x.kvs?.length && resolve(),
            () => undefined,
          ),
        );
      });
    } finally {
      await w.cancel();
    }
  }
}
