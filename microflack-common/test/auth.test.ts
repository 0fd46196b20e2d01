import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPairSync, randomInt, randomUUID } from 'node:crypto';
import express from 'express';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { CLIENT_ADDRESS_HEADER, createAuth, type Auth } from '../src/auth.js';
import { createEtcd, type Etcd } from '../src/etcd.js';
import { errorHandler } from '../src/errors.js';
import {
  createRevocationList,
  formatRevokedUntil,
  parseRevokedUntil,
  REVOKED_USERS_PREFIX,
  type RevocationList,
} from '../src/revocation.js';
import {
  bearer,
  makeToken,
  sharedBackends,
  TEST_JWT_SECRET_KEY,
  waitFor,
} from '@microflack/testkit';

describe('auth middlewares', () => {
  let etcd: Etcd;
  let revocations: RevocationList;
  let auth: Auth;
  let app: express.Express;

  before(async () => {
    etcd = createEtcd([(await sharedBackends()).etcd]);
    revocations = createRevocationList(etcd);
    await revocations.start();
    auth = createAuth(TEST_JWT_SECRET_KEY, revocations);
    app = express();
    app.get('/required', auth.tokenRequired, (req, res) =>
      res.json({ user_id: req.auth?.claims.user_id }),
    );
    app.get('/optional', auth.tokenOptional, (req, res) =>
      res.json({ user_id: req.auth?.claims.user_id ?? null }),
    );
    app.use(errorHandler);
  });
  after(async () => {
    await revocations.stop();
    etcd.close();
  });

  it('generateToken issues HS256 with user_id, iat, exp, jti', () => {
    const token = auth.generateToken(7, 120);
    const decoded = jwt.decode(token, { complete: true });
    assert.equal(decoded?.header.alg, 'HS256');
    const claims = decoded?.payload as Record<string, unknown>;
    assert.equal(claims.user_id, 7);
    assert.equal((claims.exp as number) - (claims.iat as number), 120);
    assert.equal(typeof claims.jti, 'string');
  });

  it('accepts a valid token on a required route', async () => {
    const res = await request(app)
      .get('/required')
      .set(bearer(auth.generateToken(3)));
    assert.equal(res.status, 200);
    assert.equal(res.body.user_id, 3);
  });

  it('answers 401 with the Bearer realm and no Basic challenge without a token', async () => {
    const res = await request(app).get('/required');
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, { error: 'authentication required' });
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="Authentication Required"');
  });

  it('lets an anonymous request through a token-optional route, but not a bad token', async () => {
    assert.deepEqual((await request(app).get('/optional')).body, { user_id: null });
    assert.equal((await request(app).get('/optional').set(bearer('garbage'))).status, 401);
  });

  const forged: Record<string, () => string> = {
    'alg none': () => jwt.sign({ user_id: 1, jti: 'a' }, '', { algorithm: 'none' }),
    HS512: () => makeToken(1, { algorithm: 'HS512' }),
    'RS256 signed with a private key': () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      return jwt.sign({ user_id: 1, jti: 'b' }, privateKey, { algorithm: 'RS256' });
    },
    'tampered payload': () => {
      const [h, , s] = makeToken(1).split('.');
      const payload = Buffer.from(
        JSON.stringify({ user_id: 2, jti: 'c', iat: 1, exp: 9999999999 }),
      ).toString('base64url');
      return `${h}.${payload}.${s}`;
    },
    expired: () => makeToken(1, { expiresIn: -10 }),
    'not yet valid': () => makeToken(1, { notBefore: 3600 }),
    'wrong secret': () => makeToken(1, {}, 'another-secret-another-secret-1234'),
    'string user_id': () => makeToken('1'),
    'no exp': () => jwt.sign({ user_id: 1, jti: 'd' }, TEST_JWT_SECRET_KEY, { algorithm: 'HS256' }),
  };
  for (const [name, make] of Object.entries(forged)) {
    it(`answers 401 to a token with ${name}`, async () => {
      assert.equal((await request(app).get('/required').set(bearer(make()))).status, 401);
      assert.equal((await request(app).get('/optional').set(bearer(make()))).status, 401);
    });
  }

  it('refuses a token that was accepted once it has expired (verified tokens are remembered)', async () => {
    // exp is in whole seconds: a 1 s token made at x.999 s would expire a millisecond later.
    const token = auth.generateToken(21, 2);
    assert.equal((await request(app).get('/required').set(bearer(token))).status, 200);
    const claims = auth.verifyToken(token);
    assert.ok(claims);
    await new Promise((r) => setTimeout(r, (claims.exp - Date.now() / 1000) * 1000 + 50));
    assert.equal((await request(app).get('/required').set(bearer(token))).status, 401);
  });

  it('answers 401 once the token is revoked', async () => {
    const token = auth.generateToken(9);
    assert.equal((await request(app).get('/required').set(bearer(token))).status, 200);
    const claims = auth.verifyToken(token);
    assert.ok(claims);
    await revocations.revokeToken(claims);
    assert.equal((await request(app).get('/required').set(bearer(token))).status, 401);
  });

  it('revoke-all refuses every token of the user issued so far, not other users', async () => {
    const mine = makeToken(11, { expiresIn: 3600 });
    const theirs = makeToken(12);
    await revocations.revokeAllTokens(11);
    assert.equal((await request(app).get('/required').set(bearer(mine))).status, 401);
    assert.equal((await request(app).get('/required').set(bearer(theirs))).status, 200);
  });

  // Revoke-all records live in the shared etcd, keyed by user id: ids of its own for each test.
  const privateId = () => randomInt(1e6, 1e9);
  const signed = (claims: Record<string, unknown>) =>
    jwt.sign(
      { jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 600, ...claims },
      TEST_JWT_SECRET_KEY,
      {
        algorithm: 'HS256',
      },
    );
  const status = async (token: string) =>
    (await request(app).get('/required').set(bearer(token))).status;

  it('generateToken adds iat_ms, the same instant as iat to the millisecond', () => {
    const before = Date.now();
    const claims = auth.verifyToken(auth.generateToken(7));
    assert.ok(claims?.iat_ms !== undefined);
    assert.ok(claims.iat_ms >= before && claims.iat_ms <= Date.now());
    assert.equal(claims.iat, Math.floor(claims.iat_ms / 1000));
  });

  it('refuses a token whose iat_ms is not its iat', async () => {
    const now = Date.now();
    const iat = Math.floor(now / 1000);
    assert.equal(await status(signed({ user_id: 5, iat, iat_ms: now })), 200);
    for (const iat_ms of [now + 1000, now - 1000, String(now), now + 0.5, -1, null]) {
      assert.equal(await status(signed({ user_id: 5, iat, iat_ms })), 401, String(iat_ms));
    }
  });

  it('revoke-all compares iat_ms exactly, and tokens without it by iat as before', async () => {
    const id = privateId();
    await revocations.revokeAllTokens(id);
    const until = revocations.revokedUntilMs(id);
    assert.ok(until > 0 && until <= Date.now());
    const second = Math.floor(until / 1000);
    // With iat_ms: up to the millisecond of the revocation, and no further.
    assert.equal(
      await status(signed({ user_id: id, iat: Math.floor((until - 1) / 1000), iat_ms: until - 1 })),
      401,
    );
    assert.equal(await status(signed({ user_id: id, iat: second, iat_ms: until })), 401);
    assert.equal(
      await status(signed({ user_id: id, iat: Math.floor((until + 1) / 1000), iat_ms: until + 1 })),
      200,
    );
    // Without: the whole second of the revocation, as when records were whole seconds.
    assert.equal(await status(signed({ user_id: id, iat: second })), 401);
    assert.equal(await status(signed({ user_id: id, iat: second + 1 })), 200);
    // Signing in again at once: the new token is after the revocation, even in the same ms.
    const fresh = auth.generateToken(id);
    assert.equal(await status(fresh), 200);
    assert.ok((auth.verifyToken(fresh)?.iat_ms as number) > until);
  });

  it('reads revoke-all records in whole seconds (older instances) and in milliseconds', async () => {
    assert.equal(parseRevokedUntil('1712345678'), 1712345678999);
    assert.equal(parseRevokedUntil('1712345678.123'), 1712345678123);
    assert.equal(parseRevokedUntil('1712345678.000'), 1712345678000);
    for (const bad of ['', 'x', '1.5', '-1', '1e9', '1712345678.1234']) {
      assert.equal(parseRevokedUntil(bad), undefined, bad);
    }
    assert.equal(formatRevokedUntil(1712345678123), '1712345678.123');
    assert.equal(formatRevokedUntil(1712345678005), '1712345678.005');
    // What a reader that only knows whole seconds makes of a new record: that second, as before.
    assert.equal(Math.floor(Number(formatRevokedUntil(1712345678999))), 1712345678);

    // A record as an older instance writes it: every token of that second is revoked.
    const id = privateId();
    const second = Math.floor(Date.now() / 1000);
    await etcd.put(`${REVOKED_USERS_PREFIX}${id}`).value(String(second));
    const last = signed({ user_id: id, iat: second, iat_ms: second * 1000 + 999 });
    await waitFor('the record seen', async () => (await status(last)) === 401, 1000);
    assert.equal(
      await status(signed({ user_id: id, iat: second + 1, iat_ms: second * 1000 + 1000 })),
      200,
    );
    await etcd.delete().key(`${REVOKED_USERS_PREFIX}${id}`);
  });
});

describe('client address vouchers', () => {
  const revocations = { revokedUntilMs: () => -1 } as unknown as RevocationList;
  const auth = createAuth(TEST_JWT_SECRET_KEY, revocations);
  const req = (voucher?: string) =>
    ({
      ip: '127.0.0.1',
      headers: voucher === undefined ? {} : { [CLIENT_ADDRESS_HEADER.toLowerCase()]: voucher },
    }) as unknown as express.Request;

  it('takes the address a service vouched for, else the one the LB gave', () => {
    for (const address of ['203.0.113.9', '::ffff:198.51.100.7', '2001:db8::1']) {
      assert.equal(auth.clientAddress(req(auth.vouchForClient(address))), address);
    }
    assert.equal(auth.clientAddress(req()), '127.0.0.1');
  });

  it('ignores forged, altered, stale and malformed vouchers', () => {
    const good = auth.vouchForClient('203.0.113.9');
    const [, ms, mac] = good.split(' ') as [string, string, string];
    const other = createAuth('another-secret-another-secret-0123', revocations);
    // Correctly signed, 31 s ago.
    const stale = Date.now() - 31000;
    const oldVoucher = (() => {
      const realNow = Date.now;
      Date.now = () => stale;
      try {
        return auth.vouchForClient('203.0.113.9');
      } finally {
        Date.now = realNow;
      }
    })();
    for (const bad of [
      `9.9.9.9 ${ms} ${mac}`,
      `203.0.113.9 ${Number(ms) + 1} ${mac}`,
      `203.0.113.9 ${ms} ${mac.slice(0, -2)}AA`,
      `203.0.113.9 ${ms}`,
      other.vouchForClient('203.0.113.9'),
      oldVoucher,
      `not-an-ip ${ms} ${mac}`,
      `${good} extra`,
      '',
      'x'.repeat(5000),
    ]) {
      assert.equal(auth.clientAddress(req(bad)), '127.0.0.1', bad.slice(0, 60));
    }
  });
});
