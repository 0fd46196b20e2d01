// Forged, stale and revoked JWTs against every token-checking endpoint of users, tokens and messages.
import assert from 'node:assert/strict';
import { createHmac, createSign, generateKeyPairSync, randomInt, randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import { createLbClient, logger, type Knex, type Platform } from '@microflack/common';
import {
  makeToken,
  startStack,
  TEST_JWT_SECRET_KEY,
  waitFor,
  type TestStack,
} from '@microflack/testkit';
import { createApp } from '../src/app.js';
import { nick, usersApp } from '@microflack/testkit/apps';
import { startMessagesApp, type TestApp } from '@microflack/testkit/apps';

logger.level = process.env.LOG_LEVEL ?? 'warn';

const b64url = (data: string | Buffer) => Buffer.from(data).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** A JWT from raw parts: the header, the claims, and how (or whether) to sign. */
function forge(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  sign: (input: string) => string = (input) => hs('sha256', TEST_JWT_SECRET_KEY, input),
): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${sign(input)}`;
}

function hs(alg: 'sha256' | 'sha384' | 'sha512', secret: string | Buffer, input: string): string {
  return createHmac(alg, secret).update(input).digest('base64url');
}

interface Endpoint {
  service: 'users' | 'tokens' | 'messages';
  method: 'get' | 'post' | 'put' | 'delete';
  path: string;
  body?: object;
}

describe('forged and stale JWTs on every token-checking endpoint', () => {
  let stack: TestStack;
  let users: Express;
  let usersDb: Knex;
  let usersServer: Server;
  let tokens: Express;
  let tokensPlatform: Platform;
  let messages: TestApp;
  let userId: number;
  let otherId: number;
  let messageId: number;
  let endpoints: Endpoint[];

  before(async () => {
    stack = await startStack();
    ({ app: users, db: usersDb } = await usersApp(stack, 'mariadb'));
    // Revoke-all records live in the shared etcd, keyed by user id: a random high id stays private.
    await usersDb.raw('ALTER TABLE users AUTO_INCREMENT = ?', [randomInt(1e6, 1e9)]);
    usersServer = users.listen(0, '127.0.0.1');
    await new Promise((r) => usersServer.once('listening', r));
    tokensPlatform = await stack.platform();
    tokens = createApp({
      auth: tokensPlatform.auth,
      lb: createLbClient(`http://127.0.0.1:${(usersServer.address() as AddressInfo).port}`),
    });
    messages = await startMessagesApp(stack, 'mariadb', { allowPrivate: false, maxLinks: 0 });
    // Events go to the shared Redis, where other files' subscribers match messages by id: ids of
    // our own range keep ours from being taken for theirs.
    await messages.db.raw('ALTER TABLE messages AUTO_INCREMENT = ?', [randomInt(1e6, 1e9)]);

    const a = await request(users)
      .post('/api/users')
      .send({ nickname: nick('j'), password: 'pw' });
    const b = await request(users)
      .post('/api/users')
      .send({ nickname: nick('j'), password: 'pw' });
    userId = a.body.id;
    otherId = b.body.id;
    const m = await request(messages.app)
      .post('/api/messages')
      .set('Authorization', `Bearer ${makeToken(userId)}`)
      .send({ source: 'mine' });
    messageId = m.body.id;
    const r = await request(messages.app)
      .post('/api/rooms')
      .set('Authorization', `Bearer ${makeToken(userId)}`)
      .send({ name: 'private', private: true });
    const roomId = r.body.id as number;
    // Someone the messages app's users service knows, to invite and to open a direct room with.
    const guest = (await messages.user('j')).id;
    const thumbs = encodeURIComponent('👍');
    const rm = await request(messages.app)
      .post('/api/messages')
      .set('Authorization', `Bearer ${makeToken(userId)}`)
      .send({ source: 'in the room', room_id: roomId });
    const roomMessageId = rm.body.id as number;
    endpoints = [
      { service: 'users', method: 'get', path: '/api/users' },
      { service: 'users', method: 'get', path: `/api/users/${userId}` },
      { service: 'users', method: 'put', path: `/api/users/${userId}`, body: {} },
      { service: 'users', method: 'get', path: '/api/users/me' },
      { service: 'users', method: 'put', path: '/api/users/me' },
      { service: 'users', method: 'delete', path: '/api/users/me' },
      { service: 'tokens', method: 'post', path: '/api/tokens' },
      { service: 'tokens', method: 'get', path: '/api/tokens' },
      { service: 'tokens', method: 'delete', path: '/api/tokens' },
      { service: 'messages', method: 'get', path: '/api/messages' },
      { service: 'messages', method: 'post', path: '/api/messages', body: { source: 'forged' } },
      { service: 'messages', method: 'get', path: `/api/messages/${messageId}` },
      {
        service: 'messages',
        method: 'put',
        path: `/api/messages/${messageId}`,
        body: { source: 'forged' },
      },
      {
        service: 'messages',
        method: 'put',
        path: `/api/messages/${messageId}/reactions/${thumbs}`,
      },
      {
        service: 'messages',
        method: 'delete',
        path: `/api/messages/${messageId}/reactions/${thumbs}`,
      },
      { service: 'messages', method: 'get', path: `/api/messages?room_id=${roomId}` },
      { service: 'messages', method: 'get', path: '/api/rooms' },
      { service: 'messages', method: 'post', path: '/api/rooms', body: { name: 'forged' } },
      {
        service: 'messages',
        method: 'post',
        path: '/api/rooms/direct',
        body: { user_id: guest },
      },
      { service: 'messages', method: 'get', path: '/api/rooms/memberships' },
      { service: 'messages', method: 'get', path: `/api/rooms/${roomId}` },
      { service: 'messages', method: 'put', path: `/api/rooms/${roomId}/members/${guest}` },
      {
        service: 'messages',
        method: 'put',
        path: `/api/rooms/${roomId}/read`,
        body: { message_id: roomMessageId },
      },
      { service: 'messages', method: 'delete', path: `/api/rooms/${roomId}/members/${guest}` },
      // Last: a deleted message takes no reaction.
      { service: 'messages', method: 'delete', path: `/api/messages/${messageId}` },
    ];
  });
  after(async () => {
    usersServer.closeAllConnections();
    await new Promise((r) => usersServer.close(r));
    await messages.close();
    await usersDb.destroy();
    await stack.stop();
  });

  function call(e: Endpoint, authorization: string) {
    const app = e.service === 'users' ? users : e.service === 'tokens' ? tokens : messages.app;
    const r = request(app)[e.method](e.path).set('Authorization', authorization).timeout(10000);
    return e.body ? r.send(e.body) : r;
  }

  /** Every token on every endpoint: the count tried and the attempts not answered 401. */
  async function tryAll(tokensToTry: Array<[string, string]>) {
    let tried = 0;
    const accepted: string[] = [];
    for (const [what, token] of tokensToTry) {
      for (const e of endpoints) {
        const res = await call(e, `Bearer ${token}`);
        tried++;
        const refused =
          res.status === 401 &&
          typeof res.body.error === 'string' &&
          res.headers['www-authenticate'] === 'Bearer realm="Authentication Required"';
        if (!refused) accepted.push(`${what}: ${e.method} ${e.path} -> ${res.status}`);
      }
    }
    return { tried, accepted };
  }

  it('accepts a genuine token where one is accepted (the check below can see an acceptance)', async () => {
    // Basic-only endpoints take no bearer token at all; everything else must let this one in.
    const basicOnly = new Set(['get /api/users/me', 'post /api/tokens']);
    for (const e of endpoints) {
      const res = await call(e, `Bearer ${makeToken(userId)}`);
      const key = `${e.method} ${e.path}`;
      if (basicOnly.has(key)) assert.equal(res.status, 401, key);
      else assert.ok(res.status >= 200 && res.status < 300, `${key} -> ${res.status} ${res.text}`);
    }
  });

  it('answers 401 to every forged, stale or malformed token: tried N, accepted 0', async () => {
    const t = now();
    const valid = { user_id: userId, iat: t, exp: t + 3600, jti: randomUUID() };
    const hs256 = { alg: 'HS256', typ: 'JWT' };
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rs256 = (input: string) =>
      createSign('RSA-SHA256').update(input).sign(rsa.privateKey, 'base64url');
    const genuine = makeToken(userId);
    const [gh, , gs] = genuine.split('.') as [string, string, string];
    const withClaims = (claims: Record<string, unknown>) => forge(hs256, claims);
    const without = (key: string) => {
      const c: Record<string, unknown> = { ...valid, jti: randomUUID() };
      delete c[key];
      return withClaims(c);
    };

    const forged: Array<[string, string]> = [
      // The algorithm is the attacker's to name: none, other HMACs, public-key algorithms.
      ['alg none', forge({ alg: 'none', typ: 'JWT' }, valid, () => '')],
      ['alg None', forge({ alg: 'None' }, valid, () => '')],
      ['alg NONE with a signature', forge({ alg: 'NONE' }, valid)],
      ['alg none, HS256 signature kept', forge({ alg: 'none' }, valid)],
      ['no alg at all', forge({ typ: 'JWT' }, valid)],
      ['HS256 without a signature', forge(hs256, valid, () => '')],
      [
        'HS384 with the secret',
        forge({ alg: 'HS384' }, valid, (i) => hs('sha384', TEST_JWT_SECRET_KEY, i)),
      ],
      [
        'HS512 with the secret',
        forge({ alg: 'HS512' }, valid, (i) => hs('sha512', TEST_JWT_SECRET_KEY, i)),
      ],
      ['HS256 with another secret', forge(hs256, valid, (i) => hs('sha256', 'guessed-secret', i))],
      ['HS256 with an empty secret', forge(hs256, valid, (i) => hs('sha256', '', i))],
      ['RS256 with an attacker RSA key', forge({ alg: 'RS256' }, valid, rs256)],
      [
        'RS256 with the attacker key embedded as jwk',
        forge({ alg: 'RS256', jwk: rsa.publicKey.export({ format: 'jwk' }) }, valid, rs256),
      ],
      [
        'RS256 with jku/x5u pointing at loopback',
        forge(
          { alg: 'RS256', jku: 'http://127.0.0.1:1/jwks', x5u: 'http://127.0.0.1:1/x' },
          valid,
          rs256,
        ),
      ],
      // Key confusion: the HS secret used as if it were the RSA public key, i.e. HMAC under an RS name.
      ['RS256 signed by HMAC with the HS secret', forge({ alg: 'RS256' }, valid)],
      ['PS256 signed by HMAC with the HS secret', forge({ alg: 'PS256' }, valid)],
      [
        'HS256 keyed with the attacker public key PEM',
        forge(hs256, valid, (i) =>
          hs('sha256', rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string, i),
        ),
      ],
      [
        'ES256 with an attacker EC key',
        forge({ alg: 'ES256' }, valid, (i) =>
          createSign('SHA256')
            .update(i)
            .sign({ key: ec.privateKey, dsaEncoding: 'ieee-p1363' }, 'base64url'),
        ),
      ],
      [
        'kid path traversal with an empty key',
        forge({ ...hs256, kid: '../../../../dev/null' }, valid, (i) => hs('sha256', '', i)),
      ],
      [
        'kid SQL injection',
        forge({ ...hs256, kid: "x' UNION SELECT 'k" }, valid, (i) => hs('sha256', 'k', i)),
      ],
      // A genuine signature over other bytes.
      [
        'tampered payload (another user)',
        `${gh}.${b64url(JSON.stringify({ ...valid, user_id: otherId }))}.${gs}`,
      ],
      [
        'tampered header (HS512 named)',
        `${b64url(JSON.stringify({ alg: 'HS512', typ: 'JWT' }))}.${genuine.split('.')[1]}.${gs}`,
      ],
      [
        'signature of a different token',
        `${gh}.${genuine.split('.')[1]}.${makeToken(userId).split('.')[2]}`,
      ],
      [
        'signature with a flipped last character',
        genuine.slice(0, -1) + (genuine.endsWith('A') ? 'B' : 'A'),
      ],
      ['signature in standard base64 padding', `${genuine}==`],
      // Time.
      ['expired an hour ago', withClaims({ ...valid, iat: t - 7200, exp: t - 3600 })],
      ['expired a second ago', withClaims({ ...valid, iat: t - 100, exp: t - 1 })],
      ['expired, signed by the library', makeToken(userId, { expiresIn: -10 })],
      ['not valid before an hour from now', withClaims({ ...valid, nbf: t + 3600 })],
      ['not valid before, signed by the library', makeToken(userId, { notBefore: 3600 })],
      ['issued an hour in the future', withClaims({ ...valid, iat: t + 3600, exp: t + 7200 })],
      ['exp as a string', withClaims({ ...valid, exp: String(t + 3600) })],
      ['without exp', without('exp')],
      ['without iat', without('iat')],
      // user_id of the wrong type or range.
      ...(
        [
          ['string', String(userId)],
          ['float', userId + 0.5],
          ['negative', -userId],
          ['zero', 0],
          ['huge', 2 ** 63],
          ['above the safe range', Number.MAX_SAFE_INTEGER + 2],
          ['null', null],
          ['true', true],
          ['array', [userId]],
          ['object', { id: userId }],
          ['exponent string', '1e3'],
        ] as Array<[string, unknown]>
      ).map(([what, value]): [string, string] => [
        `user_id ${what}`,
        withClaims({ ...valid, jti: randomUUID(), user_id: value }),
      ]),
      ['without user_id', without('user_id')],
      // jti.
      ['without jti', without('jti')],
      ['empty jti', withClaims({ ...valid, jti: '' })],
      ['numeric jti', withClaims({ ...valid, jti: 12345 })],
      ['jti of 10 KB', withClaims({ ...valid, jti: 'j'.repeat(10000) })],
      // Not a JWT at all.
      ['claims not an object', forge(hs256, [valid] as unknown as Record<string, unknown>)],
      ['two parts', genuine.split('.').slice(0, 2).join('.')],
      ['four parts', `${genuine}.x`],
      ['garbage', 'a.b.c'],
      ['header not JSON', `${b64url('{alg')}.${genuine.split('.')[1]}.${gs}`],
    ];

    // Revoked: genuine tokens, revoked through the tokens service.
    const revoked = makeToken(userId);
    await request(tokens)
      .delete('/api/tokens')
      .set('Authorization', `Bearer ${revoked}`)
      .expect(204);
    const revokedAll = makeToken(userId);
    await request(tokens)
      .delete('/api/tokens?all=1')
      .set('Authorization', `Bearer ${makeToken(userId)}`)
      .expect(204);
    // Other instances learn of revocations through the etcd watch, within moments.
    await waitFor(
      'users and messages to see the revocations',
      async () => {
        const statuses = await Promise.all(
          [revoked, revokedAll].flatMap((tk) => [
            request(users).put('/api/users/me').set('Authorization', `Bearer ${tk}`),
            request(messages.app).get('/api/messages').set('Authorization', `Bearer ${tk}`),
          ]),
        );
        return statuses.every((r) => r.status === 401);
      },
      5000,
    );
    forged.push(['revoked', revoked], ['revoked by revoke-all', revokedAll]);

    const { tried, accepted } = await tryAll(forged);
    console.log(
      `JWT matrix: ${forged.length} tokens x ${endpoints.length} endpoints: tried ${tried}, accepted ${accepted.length}`,
    );
    assert.equal(tried, forged.length * endpoints.length);
    assert.deepEqual(accepted, []);
  });
});
