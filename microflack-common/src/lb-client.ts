// HTTP calls to other services through the load balancer, with timeouts and careful retries.
import { logger } from './log.js';

const log = logger.child({ module: 'lb-client' });

export const LB_TIMEOUT_MS = 5000;
export const LB_MAX_TRIES = 5;
const BACKOFF_BASE_MS = 50;
const BACKOFF_MAX_MS = 1000;

export interface LbRequest {
  headers?: Record<string, string>;
  body?: unknown;
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

function backoffMs(attempt: number): number {
  // Full jitter: spreads the retries of many callers after the same outage.
  return Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
}

/**
 * Retry rules: a connection that was never made (refused, unresolvable) is retried for every method.
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
    let lastError: unknown;
    for (let attempt = 0; attempt < LB_MAX_TRIES; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, backoffMs(attempt)));
      let res: Response;
      try {
        res = await fetch(base + path, {
          method,
          headers,
          body,
          signal: AbortSignal.timeout(opts.timeoutMs ?? LB_TIMEOUT_MS),
        });
      } catch (err) {
        lastError = err;
        const code = errorCode(err);
        const retriable =
          (code !== undefined && NOT_SENT_CODES.has(code)) ||
          (idempotent && (err as Error).name !== 'TimeoutError');
        log.debug({ method, path, attempt, code }, 'LB call failed');
        if (!retriable) break;
        continue;
      }
      const text = await res.text();
      const parsed = parseBody(text, res.headers.get('content-type'));
      if (res.status === 503 || (res.status === 502 && idempotent)) {
        lastError = new LbUnavailableError(`${method} ${path}: ${res.status}`);
        if (attempt < LB_MAX_TRIES - 1) continue;
      }
      return { status: res.status, headers: res.headers, body: parsed as T };
    }
    log.warn({ method, path, err: (lastError as Error)?.message }, 'LB call gave up');
    throw new LbUnavailableError(
      `${method} ${path} failed: ${(lastError as Error)?.message ?? 'unknown'}`,
    );
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
