// HTTP calls to other services through the load balancer, with timeouts and careful retries.
import { handleWhen } from 'cockatiel';
import { logger } from './log.js';
import { RETRY_POLICIES, retryPolicy } from './retry.js';
import { INSTANCE_HEADER } from './service.js';

const log = logger.child({ module: 'lb-client' });

export const LB_TIMEOUT_MS = 5000;
export const LB_MAX_TRIES = 5;

export interface LbRequest {
  headers?: Record<string, string>;
  body?: unknown;
  /**
   * The whole call's deadline, retries included (default LB_TIMEOUT_MS): each try gets what is
   * left, and none starts once it has passed.
   */
  timeoutMs?: number;
  /**
   * Whether a failure after the request may have reached a service can be retried.
   * Default: true for GET, PUT and DELETE (idempotent in MicroFlack's API), false for POST.
   */
  idempotent?: boolean;
}

export interface LbResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

export class LbUnavailableError extends Error {
  override name = 'LbUnavailableError';
}

export interface LbClient {
  get<T = unknown>(path: string, opts?: LbRequest): Promise<LbResponse<T>>;
  post<T = unknown>(path: string, opts?: LbRequest): Promise<LbResponse<T>>;
  put<T = unknown>(path: string, opts?: LbRequest): Promise<LbResponse<T>>;
  delete<T = unknown>(path: string, opts?: LbRequest): Promise<LbResponse<T>>;
}

// Connection never made: nothing reached a service, so even a POST can be sent again.
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

function errorCode(err: unknown): string | undefined {
  const cause = (err as { cause?: { code?: string } })?.cause;
  return cause?.code ?? (err as { code?: string })?.code;
}

/** A failure worth another try: thrown by one attempt, caught by the retry policy. */
class RetriableFailure extends Error {
  constructor(
    cause: unknown,
    /** The answer to give if this was the last try (a 503 or 502 is answered, not thrown). */
    readonly response?: LbResponse,
  ) {
    super((cause as Error)?.message ?? 'unknown', { cause });
  }
}

const retries = retryPolicy(RETRY_POLICIES.lbCall, {
  maxAttempts: LB_MAX_TRIES - 1,
  handle: handleWhen((err) => err instanceof RetriableFailure),
});

/** The deadline passed between tries: the last try's failure stands, not retried. */
class OutOfTime extends Error {
  constructor(readonly last: RetriableFailure) {
    super(last.message, { cause: last.cause });
  }
}

/**
 * Retry rules, within the call's deadline (a service that sheds load with 503 after a wait must
 * not be asked again and again past the time the caller's own client waits): a connection that was never made (refused, unresolvable) is retried for every method.
 * 503 is retried for every method too: HAProxy answers 503 when no instance is up, and MicroFlack
 * services answer 503 only before doing any work. 502, resets and timeouts, after which the request
 * may have been processed, are retried only for idempotent requests (not POST by default).
 */
export function createLbClient(baseUrl: string): LbClient {
  const base = baseUrl.replace(/\/+$/, '');

  async function call<T>(
    method: string,
    path: string,
    opts: LbRequest = {},
  ): Promise<LbResponse<T>> {
    const idempotent = opts.idempotent ?? method !== 'POST';
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const deadline = Date.now() + (opts.timeoutMs ?? LB_TIMEOUT_MS);
    let last: RetriableFailure | undefined;
    async function attempt({ attempt }: { attempt: number }): Promise<LbResponse<T>> {
      const left = deadline - Date.now();
      if (last && left <= 0) throw new OutOfTime(last);
      let res: Response;
      try {
        res = await fetch(base + path, {
          method,
          headers,
          body,
          signal: AbortSignal.timeout(Math.max(1, left)),
        });
      } catch (err) {
        const code = errorCode(err);
        const retriable =
          (code !== undefined && NOT_SENT_CODES.has(code)) ||
          (idempotent && (err as Error).name !== 'TimeoutError');
        log.debug({ method, path, attempt, code }, 'LB call failed');
        // A retry cut short by the deadline: what the tries before it got is the answer.
        if (last && (err as Error).name === 'TimeoutError') throw new OutOfTime(last);
        if (!retriable) throw err;
        throw (last = new RetriableFailure(err));
      }
      const text = await res.text();
      const parsed = parseBody(text, res.headers.get('content-type'));
      const response = { status: res.status, headers: res.headers, body: parsed as T };
      // A 503 a service wrote itself (its instance header names it) says it sheds load or lacks a
      // dependency: asking again adds to the overload, so the caller gets it as it is. HAProxy's
      // own 503 (no live instance, header `lb`) is retried: an instance may be back in a moment.
      const author = res.headers.get(INSTANCE_HEADER);
      const fromLb = author === null || author === 'lb';
      if ((res.status === 503 && fromLb) || (res.status === 502 && idempotent)) {
        const err = new LbUnavailableError(`${method} ${path}: ${res.status}`);
        throw (last = new RetriableFailure(err, response));
      }
      return response;
    }

    try {
      return await retries.execute(attempt);
    } catch (caught) {
      const err = caught instanceof OutOfTime ? caught.last : caught;
      // Out of tries on an answer: that answer (the last 503 or 502) is the result.
      if (err instanceof RetriableFailure && err.response) return err.response as LbResponse<T>;
      const cause = err instanceof RetriableFailure ? err.cause : err;
      log.warn({ method, path, err: (cause as Error)?.message }, 'LB call gave up');
      throw new LbUnavailableError(
        `${method} ${path} failed: ${(cause as Error)?.message ?? 'unknown'}`,
      );
    }
  }

  return {
    get: (path, opts) => call('GET', path, opts),
    post: (path, opts) => call('POST', path, opts),
    put: (path, opts) => call('PUT', path, opts),
    delete: (path, opts) => call('DELETE', path, opts),
  };
}

function parseBody(text: string, contentType: string | null): unknown {
  if (text === '') return undefined;
  if (contentType?.includes('json')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}
