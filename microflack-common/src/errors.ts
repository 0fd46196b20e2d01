// Errors become `{"error": "..."}` responses in one place.
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { logger } from './log.js';

const log = logger.child({ module: 'errors' });

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const notFound: RequestHandler = (_req, _res, next) => {
  next(new HttpError(404, 'not found'));
};

const bodyParserMessages: Record<string, string> = {
  'entity.too.large': 'request body too large',
  'entity.parse.failed': 'malformed JSON body',
  'encoding.unsupported': 'unsupported body encoding',
  'charset.unsupported': 'unsupported body charset',
  'request.aborted': 'request aborted',
  'request.size.invalid': 'request size did not match content length',
};

// Four parameters are how express recognises an error handler.
export const errorHandler: ErrorRequestHandler = (err, _req, res, _next) => {
  // HttpError, or body-parser's 4xx for malformed JSON: the client's fault.
  const raw = Number(err?.status ?? err?.statusCode);
  const status = raw >= 400 && raw < 600 ? raw : 500;
  if (status >= 500 && !(err instanceof HttpError)) log.error({ err }, 'request failed');
  if (err instanceof HttpError) res.set(err.headers);
  const message =
    err instanceof HttpError
      ? err.message
      : status >= 500
        ? 'internal error'
        : (bodyParserMessages[err?.type] ?? 'bad request');
  if (res.headersSent) return;
  res.status(status).json({ error: message });
};
