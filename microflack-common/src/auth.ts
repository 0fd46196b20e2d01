// JWT issue and verification (HS256 only), and the middlewares that guard routes.
import { randomUUID } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import jwt from 'jsonwebtoken';
import { LRUCache } from 'lru-cache';
import { HttpError } from './errors.js';
import type { RevocationList } from './revocation.js';

export interface TokenClaims {
  user_id: number;
  iat: number;
  exp: number;
  jti: string;
}

declare module 'express-serve-static-core' {
  interface Request {
    /** Set by the auth middlewares when the request carried a valid token. */
    auth?: { claims: TokenClaims; token: string };
  }
}

// Bearer, not Basic: a Basic challenge makes browsers pop up a login dialog.
export const AUTH_CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="Authentication Required"' };

export function authRequired(): HttpError {
  return new HttpError(401, 'authentication required', AUTH_CHALLENGE);
}

export interface Auth {
  generateToken(userId: number, expiresInSeconds?: number): string;
  verifyToken(token: string): TokenClaims | undefined;
  tokenRequired: RequestHandler;
  tokenOptional: RequestHandler;
  revocations: RevocationList;
}

const CLOCK_SKEW_SECONDS = 30;
// Bounds the verified-token cache (a few hundred bytes each).
const MAX_VERIFIED_TOKENS = 10000;

export function createAuth(secret: string, revocations: RevocationList): Auth {
  function generateToken(userId: number, expiresInSeconds = 3600): string {
    return jwt.sign({ user_id: userId, jti: randomUUID() }, secret, {
      algorithm: 'HS256',
      expiresIn: expiresInSeconds,
    });
  }

  // A token's signature and claims never change, so each token string is verified once
  // (jsonwebtoken takes ~300 µs per HS256 verify, as much as a whole list request); expiry and
  // revocation, which do change, are checked on every use. An entry lives until its token expires.
  const verified = new LRUCache<string, TokenClaims>({ max: MAX_VERIFIED_TOKENS });

  function verifySignature(token: string): TokenClaims | undefined {
    let payload: unknown;
    try {
      // Pinning the algorithm refuses `none`, HS512 and public-key confusion alike.
      payload = jwt.verify(token, secret, { algorithms: ['HS256'], clockTolerance: 0 });
    } catch {
      return undefined;
    }
    if (typeof payload !== 'object' || payload === null) return undefined;
    const c = payload as Record<string, unknown>;
    if (!Number.isSafeInteger(c.user_id) || (c.user_id as number) <= 0) return undefined;
    if (typeof c.jti !== 'string' || c.jti.length === 0 || c.jti.length > 128) return undefined;
    if (!Number.isInteger(c.iat) || !Number.isInteger(c.exp)) return undefined;
    if ((c.iat as number) > Date.now() / 1000 + CLOCK_SKEW_SECONDS) return undefined;
    return { user_id: c.user_id as number, iat: c.iat as number, exp: c.exp as number, jti: c.jti };
  }

  function verifyToken(token: string): TokenClaims | undefined {
    let claims = verified.get(token);
    if (!claims) {
      claims = verifySignature(token);
      if (!claims) return undefined;
      verified.set(token, claims, { ttl: Math.max(1, claims.exp * 1000 - Date.now()) });
    }
    if (Math.floor(Date.now() / 1000) >= claims.exp) {
      verified.delete(token);
      return undefined;
    }
    if (revocations.isRevoked(claims.jti, claims.user_id, claims.iat)) return undefined;
    return claims;
  }

  /** undefined: no bearer token at all; null: a token that is not valid. */
  function readBearer(req: Request): { claims: TokenClaims; token: string } | null | undefined {
    const header = req.headers.authorization;
    if (header === undefined) return undefined;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) return header.toLowerCase().startsWith('basic ') ? undefined : null;
    const token = match[1] as string;
    const claims = verifyToken(token);
    return claims ? { claims, token } : null;
  }

  const tokenRequired: RequestHandler = (req, _res, next) => {
    const auth = readBearer(req);
    if (!auth) return next(authRequired());
    req.auth = auth;
    next();
  };

  // No token is anonymous; a bad token is still refused.
  const tokenOptional: RequestHandler = (req, _res, next) => {
    const auth = readBearer(req);
    if (auth === null) return next(authRequired());
    if (auth) req.auth = auth;
    next();
  };

  return { generateToken, verifyToken, tokenRequired, tokenOptional, revocations };
}

/** Parses `Authorization: Basic`; undefined when absent or malformed. */
export function readBasicAuth(req: Request): { username: string; password: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
