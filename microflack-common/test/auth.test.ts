import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import express from 'express';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { createAuth, type Auth } from '../src/auth.js';
import { createEtcd, type Etcd3 } from '../src/etcd.js';
import { errorHandler } from '../src/errors.js';
import { createRevocationList, type RevocationList } from '../src/revocation.js';
import { bearer, makeToken, sharedBackends, TEST_JWT_SECRET_KEY } from '../src/testing/index.js';

describe('auth middlewares', () => {
  let etcd: Etcd3;
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
    const token = auth.generateToken(21, 1);
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
});
