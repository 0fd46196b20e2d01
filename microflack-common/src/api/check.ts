// The response check (on under NODE_ENV=test): every answer a route gives is held to its operation's
// contract, so that every test calling the API checks the contract too. An answer that breaks it is
// logged as an error and replaced by a 500, which no test lets pass.
import { Router, type RequestHandler, type Response } from 'express';
import type { z } from 'zod';
import { logger } from '../log.js';
import { issueMessage } from './errors.js';
import type { Operation } from './operations.js';

export const CONTRACT_BROKEN = 'response does not match its schema';

/** Marks the check's router, so that a walk of an app's routes can tell it from the API's. */
export const RESPONSE_CHECK = Symbol.for('microflack.responseCheck');

/** Why this answer breaks the operation's contract, or undefined when it keeps it. */
export function contractProblem(
  op: Operation,
  status: number,
  headers: { get(name: string): string | undefined },
  body: Buffer | string | undefined,
  bodyExpected: boolean,
): string | undefined {
  const spec = op.responses[status];
  if (!spec) return `status ${status} is not documented`;
  for (const [name, header] of Object.entries(spec.headers ?? {})) {
    if (header.required && headers.get(name) === undefined) return `header ${name} is missing`;
  }
  const empty = body === undefined || body.length === 0;
  if (!spec.schema) return empty ? undefined : 'a body where none is documented';
  // A HEAD answer carries the headers only.
  if (!bodyExpected) return undefined;
  const type = headers.get('content-type') ?? '';
  if (!/^application\/json\b/i.test(type)) return `content type "${type}", not JSON`;
  let json: unknown;
  try {
    json = JSON.parse(typeof body === 'string' ? body : (body ?? Buffer.alloc(0)).toString('utf8'));
  } catch {
    return 'a body that is not JSON';
  }
  const parsed = (spec.schema as z.ZodType).safeParse(json);
  if (parsed.success) return undefined;
  return parsed.error.issues
    .slice(0, 3)
    .map((i) => issueMessage(i, 'body'))
    .join('; ');
}

function headerReader(res: Response) {
  return {
    get(name: string): string | undefined {
      const v = res.getHeader(name);
      return v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : String(v);
    },
  };
}

function holdToContract(op: Operation, res: Response, bodyExpected: boolean): void {
  const end = res.end;
  // Express's send() and end() alike finish here; an answer streamed with write() is not checked.
  res.end = function (this: Response, ...args: unknown[]) {
    res.end = end;
    const chunk = typeof args[0] === 'function' ? undefined : args[0];
    if (
      res.headersSent ||
      (chunk !== undefined && typeof chunk !== 'string' && !Buffer.isBuffer(chunk))
    ) {
      return (end as (...a: unknown[]) => Response).apply(this, args);
    }
    const problem = contractProblem(
      op,
      res.statusCode,
      headerReader(res),
      chunk as Buffer | string | undefined,
      bodyExpected,
    );
    if (problem === undefined) return (end as (...a: unknown[]) => Response).apply(this, args);
    // On the root logger (not a child made at import), so that a test can watch for the line.
    logger.error(
      { module: 'contract', operation: op.operationId, status: res.statusCode, problem },
      `${CONTRACT_BROKEN}: ${op.method.toUpperCase()} ${op.path} answered ${res.statusCode}: ${problem}`,
    );
    const body = JSON.stringify({ error: CONTRACT_BROKEN });
    res.statusCode = 500;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    return end.call(this, body, 'utf8');
  } as typeof res.end;
}

/**
 * Middleware that finds each request's operation the way express routes it (same matching: case,
 * trailing slash, HEAD as GET) and holds the answer to it. Requests no operation matches pass as
 * they are.
 */
export function responseCheck(operations: readonly Operation[]): RequestHandler {
  const router = Router();
  for (const op of operations) {
    router[op.method](op.mount + (op.route === '/' ? '' : op.route), (req, res, next) => {
      holdToContract(op, res, req.method !== 'HEAD');
      next('router');
    });
  }
  return Object.assign(router, { [RESPONSE_CHECK]: true });
}
