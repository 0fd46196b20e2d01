// JWT issue and verification (HS256 only), and the middlewares that guard routes.
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
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
  /**
   * The issue time in milliseconds (iat is its second). Revoke-all compares it exactly, so a token
   * issued right after "sign out everywhere" is not caught by it. Absent in tokens issued before.
   */
  iat_ms?: number;
}

declare module 'express-serve-static-core' {
  interface Request {
    /** Set by the auth middlewares when the request carried a valid token. */
    auth?: { claims: TokenClaims; token: string };
  }
}

/**
 * The user id a token names, read without checking its signature: only for a token that a service
 * holding the key has just accepted (the socketio gateway, after users answered its ping).
 */
export function unverifiedUserId(token: string): number | undefined {
  const claims = jwt.decode(token, { json: true });
  const id = claims?.user_id;
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : undefined;
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
  /**
   * A value for CLIENT_ADDRESS_HEADER: vouches, with the platform's secret, that a request a
   * service makes on a client's behalf (tokens asking users to check a password) is that client's.
   */
  vouchForClient(address: string): string;
  /** The client's address: a valid CLIENT_ADDRESS_HEADER's, else the one the LB gave (req.ip). */
  clientAddress(req: Request): string;
}

/**
 * Carries a client's address on a call one service makes to another through the LB, which drops
 * every client-supplied X-Forwarded-For and sets its own (the calling service's address). Value:
 * "<address> <unix ms> <HMAC-SHA256, base64url>"; only a service holding JWT_SECRET_KEY can make one.
 */
export const CLIENT_ADDRESS_HEADER = 'X-MicroFlack-Client-Address';
// A voucher is made just before the call it goes with: an old one is a replay.
const VOUCHER_MAX_AGE_MS = 30000;

const CLOCK_SKEW_SECONDS = 30;
// Bounds the verified-token cache (a few hundred bytes each).
const MAX_VERIFIED_TOKENS = 10000;

export function createAuth(secret: string, revocations: RevocationList): Auth {
  function generateToken(userId: number, expiresInSeconds = 3600): string {
    // After any revoke-all this instance knows of, even one made within the same millisecond or
    // by a host whose clock is a little ahead: signing in again right after signing out everywhere
    // must give a token that revocation does not cover.
    const iatMs = Math.max(Date.now(), revocations.revokedUntilMs(userId) + 1);
    return jwt.sign(
      { user_id: userId, jti: randomUUID(), iat: Math.floor(iatMs / 1000), iat_ms: iatMs },
      secret,
      { algorithm: 'HS256', expiresIn: expiresInSeconds },
    );
  }

  // A key of its own for vouchers, derived from the secret: a voucher is never a valid JWT signature.
  const voucherKey = createHmac('sha256', secret).update('microflack client address v1').digest();
  const voucherMac = (address: string, ms: number) =>
    createHmac('sha256', voucherKey).update(`${address} ${ms}`).digest();

  function vouchForClient(address: string): string {
    const ms = Date.now();
    return `${address} ${ms} ${voucherMac(address, ms).toString('base64url')}`;
  }

  function vouchedAddress(value: string): string | undefined {
    const parts = value.split(' ');
    if (parts.length !== 3) return undefined;
    const [address, msText, mac] = parts as [string, string, string];
    if (isIP(address) === 0 || !/^[0-9]{1,15}$/.test(msText)) return undefined;
    const ms = Number(msText);
    if (Math.abs(Date.now() - ms) > VOUCHER_MAX_AGE_MS) return undefined;
    const given = Buffer.from(mac, 'base64url');
    const expected = voucherMac(address, ms);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    return address;
  }

  function clientAddress(req: Request): string {
    const voucher = req.headers[CLIENT_ADDRESS_HEADER.toLowerCase()];
    const vouched = typeof voucher === 'string' ? vouchedAddress(voucher) : undefined;
    return vouched ?? req.ip ?? 'unknown';
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
    const claims: TokenClaims = {
      user_id: c.user_id as number,
      iat: c.iat as number,
      exp: c.exp as number,
      jti: c.jti,
    };
    if (c.iat_ms !== undefined) {
      // Only ever the same instant as iat, to the millisecond.
      if (!Number.isSafeInteger(c.iat_ms) || Math.floor((c.iat_ms as number) / 1000) !== c.iat) {
        return undefined;
      }
      claims.iat_ms = c.iat_ms as number;
    }
    return claims;
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
    if (revocations.isRevoked(claims.jti, claims.user_id, claims.iat, claims.iat_ms)) {
      return undefined;
    }
    return claims;
  }

  /** undefined: no bearer token at all; null: a token that is not valid. */
  function readBearer(req: Request): { claims: TokenClaims; token: string } | null | undefined {
    const token = bearerTokenOf(req.headers.authorization);
    if (typeof token !== 'string') return token;
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

  return {
    generateToken,
    verifyToken,
    tokenRequired,
    tokenOptional,
    revocations,
    vouchForClient,
    clientAddress,
  };
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

/**
 * The token of an `Authorization` header: undefined when there is none to check (no header, or
 * Basic credentials), null when the header is malformed.
 */
function bearerTokenOf(header: string | undefined): string | null | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) return header.toLowerCase().startsWith('basic ') ? undefined : null;
  return match[1] as string;
}

/** A caller for answers from memory (response-cache.ts): anyone without credentials. */
export function anonymousOnly(req: IncomingMessage): string | null {
  return req.headers.authorization === undefined ? 'anonymous' : null;
}

/**
 * A caller for answers from memory: anyone without credentials, or the user of a valid bearer
 * token (checked as tokenOptional checks it: signature, expiry, revocation). Anything else is for
 * the app to answer (a bad token's 401, Basic credentials).
 */
export function bearerIdentity(
  auth: Pick<Auth, 'verifyToken'>,
): (req: IncomingMessage) => string | null {
  return (req) => {
    const header = req.headers.authorization;
    if (header === undefined) return 'anonymous';
    // Read as tokenOptional reads it; Basic credentials (which it lets through) are left to the app.
    const token = bearerTokenOf(header);
    const claims = typeof token === 'string' ? auth.verifyToken(token) : undefined;
    return claims ? `user ${claims.user_id}` : null;
  };
}
