// The /api/tokens routes: issue a token for a password checked by the users service, check one, revoke.
import { Router } from 'express';
import {
  authRequired,
  CLIENT_ADDRESS_HEADER,
  HttpError,
  LbUnavailableError,
  logger,
  readBasicAuth,
  type Auth,
  type LbClient,
} from '@microflack/common';
import { parseQuery, RevokeQuery, tokensApi as api, UserIdentity } from '@microflack/common/api';

const log = logger.child({ module: 'tokens' });

export const USERS_CALL_TIMEOUT_MS = 5000;

export interface RoutesDeps {
  auth: Auth;
  lb: LbClient;
}

function usersUnavailable(): HttpError {
  return new HttpError(503, 'users service unavailable, try again shortly', { 'Retry-After': '1' });
}

export function tokensRouter({ auth, lb }: RoutesDeps): Router {
  const router = Router();

  router.post(api.createToken.route, async (req, res) => {
    // Only well-formed Basic credentials travel on to the users service.
    if (!readBasicAuth(req)) throw authRequired();
    let answer;
    try {
      answer = await lb.get<unknown>('/api/users/me', {
        headers: {
          authorization: req.headers.authorization as string,
          // The users service throttles failed sign-ins per client address: vouch for the
          // client's (the LB replaces any X-Forwarded-For with this service's own address).
          ...(req.ip ? { [CLIENT_ADDRESS_HEADER]: auth.vouchForClient(req.ip) } : {}),
        },
        timeoutMs: USERS_CALL_TIMEOUT_MS,
      });
    } catch (err) {
      if (err instanceof LbUnavailableError) throw usersUnavailable();
      throw err;
    }
    if (answer.status === 401) throw authRequired();
    if (answer.status === 429) {
      const retryAfter = answer.headers.get('retry-after');
      throw new HttpError(
        429,
        'too many failed sign-ins, try again later',
        retryAfter && /^\d{1,6}$/.test(retryAfter) ? { 'Retry-After': retryAfter } : {},
      );
    }
    const user = answer.status === 200 ? UserIdentity.safeParse(answer.body) : undefined;
    if (!user?.success) {
      // Anything else (a 5xx, the LB's default backend answering) is not an answer about the password.
      log.warn({ status: answer.status }, 'unexpected answer from the users service');
      throw usersUnavailable();
    }
    res.set('Cache-Control', 'no-store');
    res.json({ token: auth.generateToken(user.data.id) });
  });

  router.get(api.getToken.route, auth.tokenRequired, (req, res) => {
    const claims = req.auth?.claims;
    res.set('Cache-Control', 'no-store');
    res.json({ user_id: claims?.user_id, issued_at: claims?.iat, expires_at: claims?.exp });
  });

  router.delete(api.revokeToken.route, auth.tokenRequired, async (req, res) => {
    const claims = req.auth?.claims;
    if (!claims) throw authRequired();
    const { all } = parseQuery(RevokeQuery, req.query);
    try {
      if (all) await auth.revocations.revokeAllTokens(claims.user_id);
      else await auth.revocations.revokeToken(claims);
    } catch (err) {
      log.warn({ err }, 'revocation could not be written to etcd');
      throw new HttpError(503, 'revocation store unavailable, try again shortly', {
        'Retry-After': '1',
      });
    }
    res.status(204).end();
  });

  return router;
}
