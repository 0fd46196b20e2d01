// The API contract: its OpenAPI document, the request schemas' answers, and the response check.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import request from 'supertest';
import { z } from 'zod';
import {
  apiOperations,
  CONTRACT_BROKEN,
  defineOperation,
  MessageIdParams,
  MessageListQuery,
  MessageSource,
  NewUser,
  openApiDocument,
  parseBody,
  parseParams,
  parseQuery,
  RevokeQuery,
  UserChange,
  UserIdParams,
  UserListQuery,
} from '../src/api/index.js';
import { responseChecksEnabled } from '../src/config.js';
import { HttpError } from '../src/errors.js';
import { logger } from '../src/log.js';
import { createServiceApp } from '../src/service.js';

type Doc = ReturnType<typeof openApiDocument>;
type AnyObject = Record<string, unknown>;

function operationOf(doc: Doc, path: string, method: string): AnyObject {
  const item = doc.paths?.[path] as AnyObject | undefined;
  const op = item?.[method] as AnyObject | undefined;
  assert.ok(op, `${method.toUpperCase()} ${path} is documented`);
  return op;
}

describe('the OpenAPI document', () => {
  const doc = openApiDocument();

  it('validates as OpenAPI 3.1', async () => {
    const validator = new Validator();
    const result = await validator.validate(
      structuredClone(doc) as unknown as Parameters<Validator['validate']>[0],
    );
    assert.deepEqual(result, { valid: true });
    assert.equal(validator.version, '3.1');
    assert.equal(doc.openapi, '3.1.0');
  });

  it('documents each operation at its path and method, once', () => {
    const seen = new Set<string>();
    for (const op of apiOperations) {
      const key = `${op.method} ${op.path}`;
      assert.ok(!seen.has(key), `${key} is defined once`);
      seen.add(key);
      const documented = operationOf(doc, op.path, op.method);
      assert.equal(documented.operationId, op.operationId);
      assert.equal(documented.summary, op.summary);
    }
    const documented = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
      Object.keys(item as AnyObject).map((method) => `${method} ${path}`),
    );
    assert.deepEqual(documented.sort(), [...seen].sort());
    assert.deepEqual([...new Set(apiOperations.map((op) => op.path))].sort(), [
      '/api/messages',
      '/api/messages/{id}',
      '/api/messages/{id}/reactions/{emoji}',
      '/api/rooms',
      '/api/rooms/direct',
      '/api/rooms/memberships',
      '/api/rooms/{id}',
      '/api/rooms/{id}/members/{user_id}',
      '/api/rooms/{id}/read',
      '/api/tokens',
      '/api/users',
      '/api/users/me',
      '/api/users/{id}',
    ]);
  });

  it('names its security: Bearer JWT, Basic for POST /api/tokens, nothing to register', () => {
    assert.deepEqual(doc.components?.securitySchemes, {
      bearerAuth: {
        type: 'http',
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description: 'A token from POST /api/tokens.',
      },
      basicAuth: {
        type: 'http',
        scheme: 'basic',
        description: 'Nickname and password; only to get a token (and for GET /api/users/me).',
      },
    });
    assert.deepEqual(operationOf(doc, '/api/tokens', 'post').security, [{ basicAuth: [] }]);
    assert.deepEqual(operationOf(doc, '/api/tokens', 'get').security, [{ bearerAuth: [] }]);
    assert.deepEqual(operationOf(doc, '/api/users', 'post').security, []);
    assert.deepEqual(operationOf(doc, '/api/messages', 'get').security, [{}, { bearerAuth: [] }]);
    assert.deepEqual(operationOf(doc, '/api/messages', 'post').security, [{ bearerAuth: [] }]);
  });

  it('gives every error response the Error schema, and every operation the common ones', () => {
    for (const op of apiOperations) {
      const responses = operationOf(doc, op.path, op.method).responses as Record<string, AnyObject>;
      for (const status of ['400', '413', '415', '500', '503']) {
        assert.ok(responses[status], `${op.operationId} documents ${status}`);
      }
      assert.equal(Boolean(responses['304']), op.method === 'get', `${op.operationId} and 304`);
      if (op.security === 'bearer' || op.security === 'optionalBearer') {
        assert.ok(responses['401'], `${op.operationId} documents 401`);
      }
      for (const [status, response] of Object.entries(responses)) {
        if (Number(status) < 400) continue;
        const json = (response.content as AnyObject)['application/json'] as AnyObject;
        assert.deepEqual(json.schema, { $ref: '#/components/schemas/Error' }, status);
        assert.equal(typeof (json.example as AnyObject).error, 'string');
      }
    }
    assert.deepEqual(doc.components?.schemas?.Error, {
      type: 'object',
      properties: {
        error: { type: 'string', description: 'What was wrong, naming the field when one was.' },
      },
      required: ['error'],
      additionalProperties: false,
      description: 'Every refusal and failure answers this.',
    });
  });

  it('describes the query parameters as the integers and flags they stand for', () => {
    const params = operationOf(doc, '/api/messages', 'get').parameters as AnyObject[];
    const limit = params.find((p) => p.name === 'limit') as AnyObject;
    assert.equal(limit.in, 'query');
    assert.deepEqual(
      { ...(limit.schema as AnyObject), description: undefined },
      { type: 'integer', minimum: 1, maximum: 1000, description: undefined },
    );
    const online = (operationOf(doc, '/api/users', 'get').parameters as AnyObject[]).find(
      (p) => p.name === 'online',
    ) as AnyObject;
    assert.deepEqual((online.schema as AnyObject).enum, ['0', '1', 'true', 'false']);
    const id = (operationOf(doc, '/api/users/{id}', 'get').parameters as AnyObject[])[0];
    assert.equal(id?.in, 'path');
    assert.equal(id?.required, true);
  });

  it('documents the Location of a creation and the bodies of requests, with examples', () => {
    const created = (operationOf(doc, '/api/messages', 'post').responses as AnyObject)[
      '201'
    ] as AnyObject;
    assert.equal(((created.headers as AnyObject).Location as AnyObject).required, true);
    const body = operationOf(doc, '/api/users', 'post').requestBody as AnyObject;
    const json = (body.content as AnyObject)['application/json'] as AnyObject;
    assert.deepEqual(json.schema, { $ref: '#/components/schemas/NewUser' });
    assert.deepEqual(json.example, { nickname: 'susan', password: 'dog' });
  });

  it('is built once and serialises as JSON', () => {
    assert.equal(openApiDocument(), doc);
    assert.deepEqual(JSON.parse(JSON.stringify(doc)), doc);
  });
});

/** The message a body is refused with (400), or the parsed value. */
function bodyAnswer(schema: z.ZodType, body: unknown): unknown {
  try {
    return { ok: parseBody(schema, body) };
  } catch (err) {
    assert.ok(err instanceof HttpError);
    assert.equal(err.status, 400);
    return err.message;
  }
}

function queryAnswer(schema: z.ZodType, query: unknown): unknown {
  try {
    return { ok: parseQuery(schema, query) };
  } catch (err) {
    assert.ok(err instanceof HttpError);
    assert.equal(err.status, 400);
    return err.message;
  }
}

describe('request schemas', () => {
  const bodies: Array<[string, z.ZodType, unknown, unknown]> = [
    ['no body', NewUser, undefined, 'body must be a JSON object'],
    ['an array', NewUser, [], 'body must be a JSON object'],
    ['null', MessageSource, null, 'body must be a JSON object'],
    ['no nickname', NewUser, {}, 'nickname must be a string'],
    ['a lone surrogate', NewUser, { nickname: '\ud800' }, 'nickname must be valid Unicode'],
    ['an empty nickname', NewUser, { nickname: '' }, 'nickname must not be empty'],
    ['33 emoji', NewUser, { nickname: '😀'.repeat(33) }, 'nickname must be at most 32 characters'],
    [
      'a colon',
      NewUser,
      { nickname: 'a:b' },
      'nickname must not contain control characters or ":"',
    ],
    ['a space', NewUser, { nickname: 'a ' }, 'nickname must not start or end with spaces'],
    ['no password', NewUser, { nickname: 'a' }, 'password must be a string'],
    ['an empty password', NewUser, { nickname: 'a', password: '' }, 'password must not be empty'],
    [
      'a 73-byte password',
      NewUser,
      { nickname: 'a', password: 'é'.repeat(36) + 'x' },
      'password must be at most 72 bytes',
    ],
    [
      'a NUL',
      NewUser,
      { nickname: 'a', password: 'a\0' },
      'password must not contain NUL characters',
    ],
    [
      'a good user, extra keys dropped',
      NewUser,
      JSON.parse(`{"nickname":"${'😀'.repeat(32)}","password":"p","id":5,"__proto__":1}`),
      { ok: { nickname: '😀'.repeat(32), password: 'p' } },
    ],
    ['an empty change', UserChange, {}, { ok: {} }],
    ['a null nickname change', UserChange, { nickname: null }, 'nickname must be a string'],
    ['a numeric source', MessageSource, { source: 42 }, 'source must be a string'],
    ['a blank source', MessageSource, { source: ' \n\t' }, 'source must not be empty'],
    [
      'a 4001-character source',
      MessageSource,
      { source: 'x'.repeat(4001) },
      'source must be at most 4000 characters',
    ],
    [
      'a 4000-character source',
      MessageSource,
      { source: 'é'.repeat(4000) },
      { ok: { source: 'é'.repeat(4000) } },
    ],
  ];
  for (const [what, schema, body, expected] of bodies) {
    it(`answers ${what}: ${JSON.stringify(expected).slice(0, 60)}`, () => {
      assert.deepEqual(bodyAnswer(schema, body), expected);
    });
  }

  const queries: Array<[z.ZodType, AnyObject, unknown]> = [
    [MessageListQuery, {}, { ok: {} }],
    [
      MessageListQuery,
      { updated_since: '5', user_id: '7', limit: '1000', after: '12,34' },
      { ok: { updated_since: 5, user_id: 7, limit: 1000, after: { updatedAt: 12, id: 34 } } },
    ],
    [MessageListQuery, { other: 'x' }, 'query parameter "other" is not known here'],
    [
      MessageListQuery,
      { 'user_id[]': ['1', '2'] },
      'query parameter "user_id[]" is not known here',
    ],
    [
      MessageListQuery,
      { updated_since: '-5' },
      'updated_since must be an integer from 0 to 999999999999999',
    ],
    [MessageListQuery, { limit: '0' }, 'limit must be an integer from 1 to 1000'],
    [MessageListQuery, { limit: '1e3' }, 'limit must be an integer from 1 to 1000'],
    [MessageListQuery, { limit: ['1', '2'] }, 'limit must be given once'],
    [MessageListQuery, { user_id: '-1' }, 'user_id must be an integer from 1 to 999999999999999'],
    [
      MessageListQuery,
      { updated_since: '9999999999999999' },
      'updated_since must be an integer from 0 to 999999999999999',
    ],
    [MessageListQuery, { after: '1,2,3' }, 'after must be <updated_at>,<id> from a previous page'],
    [MessageListQuery, { after: ',5' }, 'after must be <updated_at>,<id> from a previous page'],
    // The first problem, in the order of the parameters.
    [MessageListQuery, { after: 'x', limit: 'y' }, 'limit must be an integer from 1 to 1000'],
    [
      UserListQuery,
      { online: 'true', updated_since: '0' },
      { ok: { online: true, updated_since: 0 } },
    ],
    [UserListQuery, { online: 'maybe' }, 'online must be 0 or 1'],
    [UserListQuery, { online: ['1', '0'] }, 'online must be given once'],
    [UserListQuery, { updated_since: '-1' }, 'updated_since must be a Unix time in seconds'],
    [RevokeQuery, { all: 'false' }, { ok: { all: false } }],
    [RevokeQuery, { all: 'yes' }, 'all must be 0 or 1'],
  ];
  for (const [schema, query, expected] of queries) {
    it(`answers ?${new URLSearchParams(query as Record<string, string>)}: ${JSON.stringify(expected).slice(0, 60)}`, () => {
      assert.deepEqual(queryAnswer(schema, query), expected);
    });
  }

  it('answers 404 naming nothing for an id that cannot be one', () => {
    for (const id of ['0', '01', '-1', '1e3', 'me', '9007199254740993', '1'.repeat(17)]) {
      assert.throws(
        () => parseParams(UserIdParams, { id }, 'user not found'),
        (err) => err instanceof HttpError && err.status === 404 && err.message === 'user not found',
        id,
      );
    }
    assert.deepEqual(parseParams(UserIdParams, { id: '9007199254740991' }, 'x'), {
      id: 9007199254740991,
    });
    assert.throws(() => parseParams(MessageIdParams, { id: '1'.repeat(16) }, 'message not found'));
    assert.deepEqual(parseParams(MessageIdParams, { id: '42' }, 'x'), { id: 42 });
  });
});

// An API of one resource, and routes that keep or break its contract as the test asks.
const Thing = z.strictObject({ id: z.int() });
const thingsApi = {
  getThing: defineOperation({
    operationId: 'getThing',
    method: 'get',
    mount: '/api/things',
    route: '/:id',
    tag: 'things',
    summary: 'Get a thing',
    security: 'none',
    responses: { 200: { description: 'The thing.', schema: Thing } },
  }),
  createThing: defineOperation({
    operationId: 'createThing',
    method: 'post',
    mount: '/api/things',
    route: '/',
    tag: 'things',
    summary: 'Make a thing',
    security: 'none',
    responses: {
      201: {
        description: 'Made.',
        schema: Thing,
        headers: { Location: { description: 'It.', required: true } },
      },
    },
  }),
  deleteThing: defineOperation({
    operationId: 'deleteThing',
    method: 'delete',
    mount: '/api/things',
    route: '/:id',
    tag: 'things',
    summary: 'Drop a thing',
    security: 'none',
    responses: { 204: { description: 'Gone.' } },
  }),
};

function thingsApp(checkResponses?: boolean) {
  return createServiceApp({ operations: Object.values(thingsApi), checkResponses }, (app) => {
    app.get('/api/things/:id', (req, res) => {
      switch (req.query.answer) {
        case 'extra':
          return res.json({ id: 1, password_hash: '$2b$10$...' });
        case 'string-id':
          return res.json({ id: '1' });
        case 'bytes':
          return res.type('application/json').send(Buffer.from('{"id":"x"}'));
        case 'text':
          return res.type('text').send('1');
        case 'teapot':
          throw new HttpError(418, 'short and stout');
        default:
          return res.json({ id: 1 });
      }
    });
    app.post('/api/things', (req, res) => {
      if (req.query.answer !== 'no-location') res.location('/api/things/1');
      res.status(201).json({ id: 1 });
    });
    app.delete('/api/things/:id', (req, res) => {
      if (req.query.answer === 'ok') res.status(204).end();
      else res.status(200).json({ id: 1 });
    });
    app.get('/api/other', (_req, res) => res.status(418).json({ anything: true }));
  });
}

describe('the response check', () => {
  const app = thingsApp(true);

  it('passes answers that keep the contract, the common error answers included', async () => {
    assert.deepEqual((await request(app).get('/api/things/1').expect(200)).body, { id: 1 });
    await request(app).get('/API/THINGS/1/').expect(200);
    await request(app).head('/api/things/1').expect(200);
    // Express answers a GET asking If-None-Match: * with 304 (RFC 9110): documented for every GET.
    const notModified = await request(app).get('/api/things/1').set('If-None-Match', '*');
    assert.equal(notModified.status, 304);
    await request(app).post('/api/things').expect(201);
    await request(app).delete('/api/things/1?answer=ok').expect(204);
    const malformed = await request(app)
      .get('/api/things/1')
      .set('Content-Type', 'application/json')
      .send('{"a":');
    assert.equal(malformed.status, 400);
    assert.deepEqual(malformed.body, { error: 'malformed JSON body' });
  });

  const broken: Array<[string, () => request.Test, RegExp]> = [
    [
      'a field the schema does not have',
      () => request(app).get('/api/things/1?answer=extra'),
      /password_hash/,
    ],
    ['a field of the wrong type', () => request(app).get('/api/things/1?answer=string-id'), /id/],
    ['pre-serialised bytes', () => request(app).get('/api/things/1?answer=bytes'), /id/],
    ['a body that is not JSON', () => request(app).get('/api/things/1?answer=text'), /not JSON/],
    ['an undocumented status', () => request(app).get('/api/things/1?answer=teapot'), /status 418/],
    [
      'a missing required header',
      () => request(app).post('/api/things?answer=no-location'),
      /Location/,
    ],
    ['an undocumented success', () => request(app).delete('/api/things/1'), /status 200/],
  ];
  for (const [what, send, problem] of broken) {
    it(`answers 500 and logs an error line for ${what}`, async (t) => {
      const error = t.mock.method(logger, 'error', () => undefined);
      const res = await send();
      assert.equal(res.status, 500);
      assert.deepEqual(res.body, { error: CONTRACT_BROKEN });
      assert.equal(error.mock.callCount(), 1);
      const [fields, line] = error.mock.calls[0]?.arguments as [AnyObject, string];
      assert.equal(fields.module, 'contract');
      assert.match(fields.problem as string, problem);
      assert.match(line, /^response does not match its schema: /);
    });
  }

  it('leaves routes that are no operation alone', async () => {
    assert.deepEqual((await request(app).get('/api/other').expect(418)).body, { anything: true });
    assert.deepEqual((await request(app).get('/api/nothing').expect(404)).body, {
      error: 'not found',
    });
  });

  it('is off unless asked for or under NODE_ENV=test, and never in production', async () => {
    const unchecked = thingsApp(false);
    const res = await request(unchecked).get('/api/things/1?answer=extra').expect(200);
    assert.equal(res.body.password_hash, '$2b$10$...');
    assert.equal(responseChecksEnabled({ NODE_ENV: 'test' }), true);
    assert.equal(responseChecksEnabled({ NODE_ENV: 'production' }), false);
    assert.equal(responseChecksEnabled({}), false);
  });
});
