import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { Express } from 'express';
import type { Knex } from '@microflack/common';
import { basic, bearer, makeToken, startStack, type TestStack } from '@microflack/testkit';
import { nick, usersApp } from '@microflack/testkit/apps';

describe('bad input on every /api/users endpoint', () => {
  let stack: TestStack;
  let app: Express;
  let db: Knex;
  let id: number;
  let token: string;

  before(async () => {
    stack = await startStack();
    ({ app, db } = await usersApp(stack, 'mariadb'));
    const res = await request(app)
      .post('/api/users')
      .send({ nickname: nick('b'), password: 'x' });
    id = res.body.id;
    token = makeToken(id);
  });
  after(async () => {
    await db.destroy();
    await stack.stop();
  });

  const endpoints = (): Array<[string, string, Record<string, string>]> => [
    ['post', '/api/users', {}],
    ['get', '/api/users', bearer(token)],
    ['get', `/api/users/${id}`, bearer(token)],
    ['put', `/api/users/${id}`, bearer(token)],
    ['get', '/api/users/me', basic('nobody', 'x')],
    ['put', '/api/users/me', bearer(token)],
    ['delete', '/api/users/me', bearer(token)],
  ];

  function send(method: string, path: string, headers: Record<string, string>) {
    const r = request(app)[method as 'get'](path);
    for (const [k, v] of Object.entries(headers)) r.set(k, v);
    return r;
  }

  it('answers 400 JSON to malformed JSON', async () => {
    for (const [method, path, headers] of endpoints()) {
      const res = await send(method, path, headers)
        .set('Content-Type', 'application/json')
        .send('{"nickname": ');
      assert.equal(res.status, 400, `${method} ${path}`);
      assert.deepEqual(res.body, { error: 'malformed JSON body' });
    }
  });

  it('answers 413 JSON to a body over 64 KB', async () => {
    for (const [method, path, headers] of endpoints()) {
      const res = await send(method, path, headers)
        .set('Content-Type', 'application/json')
        .send(JSON.stringify({ nickname: 'x'.repeat(200 * 1024), password: 'x' }));
      assert.equal(res.status, 413, `${method} ${path}`);
      assert.equal(res.body.error, 'request body too large');
    }
  });

  it('never answers 5xx to odd bodies, types and headers', async () => {
    const bodies: unknown[] = [
      null,
      [],
      'str',
      42,
      { nickname: ['a'], password: { x: 1 } },
      { nickname: 'a'.repeat(5000), password: 'p'.repeat(5000) },
      { nickname: '\u0000', password: '\u0000' },
      { nickname: '<img src=x onerror=alert(1)>', password: 'x' },
      { __proto__: { admin: true }, nickname: 'proto', password: 'x' },
      { nickname: "' OR 1=1 --", password: 'x' },
    ];
    for (const [method, path, headers] of endpoints()) {
      for (const body of bodies) {
        const res = await send(method, path, headers)
          .set('Content-Type', 'application/json')
          .send(JSON.stringify(body));
        assert.ok(res.status < 500, `${method} ${path} ${JSON.stringify(body)} -> ${res.status}`);
        if (res.status >= 400) assert.equal(typeof res.body.error, 'string');
      }
      for (const auth of [
        'Bearer ' + 'x'.repeat(8000),
        'Basic ' + Buffer.from(`${'n'.repeat(4000)}:${'p'.repeat(3000)}`).toString('base64'),
        'Basic Og==',
        'Digest abc',
        'Bearer a.b.c',
        `Bearer ${makeToken('1')}`,
        `Bearer ${makeToken(-5)}`,
      ]) {
        const res = await send(method, path, { ...headers, Authorization: auth });
        assert.ok(res.status < 500, `${method} ${path} with ${auth.slice(0, 20)} -> ${res.status}`);
      }
    }
  });

  it('answers 400 to a text/plain body on POST and PUT', async () => {
    const post = await request(app)
      .post('/api/users')
      .set('Content-Type', 'text/plain')
      .send('nickname=x');
    assert.equal(post.status, 400);
    const put = await request(app)
      .put(`/api/users/${id}`)
      .set(bearer(token))
      .set('Content-Type', 'text/plain')
      .send('nickname=x');
    assert.equal(put.status, 400);
  });

  it('answers 404 JSON for unknown routes and methods under /api/users', async () => {
    for (const [method, path] of [
      ['delete', `/api/users/${id}`],
      ['patch', '/api/users/me'],
      ['get', '/api/users/1/2'],
    ] as const) {
      const res = await request(app)[method](path).set(bearer(token));
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(typeof res.body.error, 'string');
    }
  });
});
