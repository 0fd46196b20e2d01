// An operation: one route of the API, described once. The services mount it, parse its input with its
// schemas, the response check (NODE_ENV=test) holds its answers to them, and the OpenAPI document is
// generated from the same objects.
import { z } from 'zod';
import { ErrorBody } from './errors.js';

export type Method = 'get' | 'post' | 'put' | 'delete';

/** none: no credentials; bearer: a JWT; optionalBearer: a JWT or nothing; basic: nickname:password. */
export type Security = 'none' | 'bearer' | 'optionalBearer' | 'basic';

export interface HeaderSpec {
  description: string;
  /** Every answer with this status carries it (the response check holds the services to it). */
  required?: boolean;
  schema?: z.ZodType;
  example?: string;
}

export interface ResponseSpec {
  description: string;
  /** The JSON body; none for an answer without one (204). */
  schema?: z.ZodType;
  example?: unknown;
  headers?: Record<string, HeaderSpec>;
}

export interface OperationSpec {
  operationId: string;
  method: Method;
  /** Where the service mounts its router, e.g. /api/users. */
  mount: string;
  /** The route inside that router, in express syntax: `/`, `/me`, `/:id`. */
  route: string;
  tag: string;
  summary: string;
  description?: string;
  security: Security;
  params?: z.ZodObject;
  query?: z.ZodObject;
  /** Request headers the operation reads (names in lower case). */
  headers?: z.ZodObject;
  body?: z.ZodType;
  bodyExample?: unknown;
  /** The answers particular to this operation; the ones any request can get are added. */
  responses: Record<number, ResponseSpec>;
}

export interface Operation extends OperationSpec {
  /** The OpenAPI path: mount and route, `:id` written `{id}`. */
  path: string;
}

export const retryAfterHeader: HeaderSpec = {
  description: 'Seconds to wait before trying again.',
  schema: z.string().regex(/^\d+$/),
  example: '1',
};

export function errorResponse(
  description: string,
  example: string,
  headers?: Record<string, HeaderSpec>,
): ResponseSpec {
  return { description, schema: ErrorBody, example: { error: example }, headers };
}

export const unauthorized = errorResponse(
  'No valid credentials: missing, malformed, expired or revoked.',
  'authentication required',
  {
    'WWW-Authenticate': {
      description: 'The challenge (Bearer, so that browsers show no password dialog).',
      required: true,
      example: 'Bearer realm="Authentication Required"',
    },
  },
);

/** What any request may be answered, whatever its route: body parsing, crashes, outages. */
export const COMMON_RESPONSES: Record<number, ResponseSpec> = {
  400: errorResponse(
    'The request body is not well-formed JSON (any method: a JSON body is always parsed).',
    'malformed JSON body',
  ),
  413: errorResponse('The request body is larger than 64 KB.', 'request body too large'),
  415: errorResponse(
    'The request body has an unsupported Content-Encoding or charset.',
    'unsupported body charset',
  ),
  500: errorResponse('An unexpected failure, logged by the service.', 'internal error'),
  503: errorResponse(
    'The service or one it depends on (its database, the users service, etcd) is unavailable, or no instance is up; try again after Retry-After.',
    'service temporarily unavailable',
    { 'Retry-After': retryAfterHeader },
  ),
};

/** The OpenAPI form of an express route: `/:id` → `/{id}`; `/` alone adds nothing. */
export function openApiPath(mount: string, route: string): string {
  const rest = route === '/' ? '' : route.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
  return mount + rest;
}

/** What any GET may be answered besides. */
export const COMMON_GET_RESPONSES: Record<number, ResponseSpec> = {
  304: {
    description:
      "Not modified: the request's `If-None-Match` names the answer's current `ETag` (lists and items of users, messages and rooms), or is `*`, which any current answer matches (RFC 9110). No body.",
  },
};

export function defineOperation(spec: OperationSpec): Operation {
  return {
    ...spec,
    path: openApiPath(spec.mount, spec.route),
    responses: {
      ...COMMON_RESPONSES,
      ...(spec.method === 'get' ? COMMON_GET_RESPONSES : {}),
      ...spec.responses,
    },
  };
}
