// The tokens service's contract: /api/tokens.
import { z } from 'zod';
import {
  defineOperation,
  errorResponse,
  retryAfterHeader,
  unauthorized,
  type HeaderSpec,
} from './operations.js';
import { queryFlag, queryParams } from './fields.js';

export const TOKENS_MOUNT = '/api/tokens';

export const Token = z
  .strictObject({
    token: z.string().meta({ description: 'A JWT (HS256), valid for an hour.' }),
  })
  .meta({
    id: 'Token',
    example: { token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoxfQ.signature' },
  });

export const TokenInfo = z
  .strictObject({
    user_id: z.int().positive().meta({ description: 'Whom the token signs in.' }),
    issued_at: z.int().meta({ description: 'Unix time (seconds).' }),
    expires_at: z.int().meta({ description: 'Unix time (seconds).' }),
  })
  .meta({
    id: 'TokenInfo',
    example: { user_id: 1, issued_at: 1767225600, expires_at: 1767229200 },
  });

export const RevokeQuery = queryParams({
  all: queryFlag(
    'Revoke every token of the user issued so far (1 or true), not only this one (0, false or absent).',
  ).optional(),
});

export const noStore: Record<string, HeaderSpec> = {
  'Cache-Control': { description: 'Tokens are never cached.', required: true, example: 'no-store' },
};

export const tokensApi = {
  createToken: defineOperation({
    operationId: 'createToken',
    method: 'post',
    mount: TOKENS_MOUNT,
    route: '/',
    tag: 'tokens',
    summary: 'Sign in: get a token for a nickname and password',
    description:
      'The password is checked by the users service (GET /api/users/me); repeated failures are slowed down (429).',
    security: 'basic',
    responses: {
      200: { description: 'A new token.', schema: Token, headers: noStore },
      401: unauthorized,
      429: errorResponse(
        'Too many failed sign-ins for this nickname or from this address.',
        'too many failed sign-ins, try again later',
        { 'Retry-After': retryAfterHeader },
      ),
    },
  }),
  getToken: defineOperation({
    operationId: 'getToken',
    method: 'get',
    mount: TOKENS_MOUNT,
    route: '/',
    tag: 'tokens',
    summary: 'Check a token: whom it signs in, and until when',
    security: 'bearer',
    responses: {
      200: { description: 'The token is valid.', schema: TokenInfo, headers: noStore },
      401: unauthorized,
    },
  }),
  revokeToken: defineOperation({
    operationId: 'revokeToken',
    method: 'delete',
    mount: TOKENS_MOUNT,
    route: '/',
    tag: 'tokens',
    summary: "Sign out: revoke this token, or all of the user's",
    security: 'bearer',
    query: RevokeQuery,
    responses: {
      204: { description: 'Revoked, on every instance within a second.' },
      400: errorResponse(
        'The all parameter is invalid or repeated, or the body is not well-formed JSON.',
        'all must be 0 or 1',
      ),
      401: unauthorized,
    },
  }),
};
