// The etcd key layout (the original's, which operators and tools read) and the event payloads.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  backendOptionKey,
  EventTokenSchema,
  EVENTS,
  locationKey,
  MessageSchema,
  PostMessageDataSchema,
  REVOKED_PREFIX,
  revokedTokenKey,
  revokedUserKey,
  sanitizeInstanceName,
  serviceKeysPrefix,
  UpdatedModelEventSchema,
  upstreamKey,
  UserSchema,
} from '../src/contract/index.js';

const user = {
  id: 1,
  created_at: 10,
  updated_at: 11,
  nickname: 'ada',
  last_seen_at: 11,
  online: true,
  _links: { self: '/api/users/1', messages: '/api/messages?user_id=1', tokens: '/api/tokens' },
};
const message = {
  id: 2,
  created_at: 10,
  updated_at: 10,
  source: 'hi',
  html: '<p>hi</p>',
  user_id: 1,
  room_id: 1,
  _links: { self: '/api/messages/2', user: '/api/users/1' },
};

describe('the contract', () => {
  it('builds the etcd keys of the original layout', () => {
    assert.equal(locationKey('users'), '/services/users/location');
    assert.equal(backendOptionKey('users', 'balance'), '/services/users/backend/balance');
    assert.equal(upstreamKey('users', 'users-1a2b3c'), '/services/users/upstream/users-1a2b3c');
    assert.equal(serviceKeysPrefix('users'), '/services/users/');
    assert.equal(revokedTokenKey('abc'), '/revoked-tokens/abc');
    assert.equal(revokedUserKey(7), '/revoked-users/7');
    assert.ok(revokedTokenKey('x').startsWith(REVOKED_PREFIX));
    assert.ok(revokedUserKey(1).startsWith(REVOKED_PREFIX));
  });

  it('makes any host name the start of a valid instance name', () => {
    assert.equal(sanitizeInstanceName('web-1.example.com'), 'web-1.example.com');
    assert.equal(sanitizeInstanceName('.-_x y'), 'x-y');
    assert.equal(sanitizeInstanceName('ünï'), 'n-');
    assert.equal(sanitizeInstanceName('...'), 'host');
    assert.equal(sanitizeInstanceName('a'.repeat(100), 10), 'a'.repeat(10));
  });

  it('names every Socket.IO event once', () => {
    assert.deepEqual(EVENTS, {
      updatedModel: 'updated_model',
      expiredToken: 'expired_token',
      pingUser: 'ping_user',
      postMessage: 'post_message',
      typing: 'typing',
    });
  });

  it('checks updated_model payloads by class', () => {
    assert.deepEqual(UpdatedModelEventSchema.parse({ class: 'User', model: user }), {
      class: 'User',
      model: user,
    });
    assert.deepEqual(UpdatedModelEventSchema.parse({ class: 'Message', model: message }), {
      class: 'Message',
      model: message,
    });
    for (const bad of [
      { class: 'User', model: message },
      { class: 'Message', model: user },
      { class: 'Token', model: user },
      { class: 'User' },
      { class: 'User', model: { ...user, online: 1 } },
      { class: 'Message', model: { ...message, html: null } },
    ]) {
      assert.equal(UpdatedModelEventSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.equal(UserSchema.safeParse({ ...user, id: 0 }).success, false);
    assert.equal(MessageSchema.safeParse({ ...message, user_id: 1.5 }).success, false);
  });

  it('checks event arguments with the messages clients are answered', () => {
    const first = (schema: typeof EventTokenSchema | typeof PostMessageDataSchema, v: unknown) => {
      const r = schema.safeParse(v);
      return r.success ? 'ok' : r.error.issues[0]?.message;
    };
    assert.equal(first(EventTokenSchema, 'a.b-c_d'), 'ok');
    assert.equal(first(EventTokenSchema, ''), 'token required');
    assert.equal(first(EventTokenSchema, 42), 'token required');
    assert.equal(first(EventTokenSchema, 'a b'), 'malformed token');
    assert.equal(first(EventTokenSchema, 'x'.repeat(4097)), 'malformed token');
    assert.equal(first(PostMessageDataSchema, { source: 'hi' }), 'ok');
    assert.equal(first(PostMessageDataSchema, ['source']), 'message data must be an object');
    assert.equal(first(PostMessageDataSchema, null), 'message data must be an object');
    assert.equal(first(PostMessageDataSchema, {}), 'message source must be a string');
    assert.equal(
      first(PostMessageDataSchema, { source: 'hi', idempotency_key: 'k-1:a.b_c' }),
      'ok',
    );
    for (const key of ['', 'a b', 'x'.repeat(65), 42]) {
      assert.match(
        String(first(PostMessageDataSchema, { source: 'hi', idempotency_key: key })),
        /^idempotency_key must be 1 to 64/,
      );
    }
    // Other fields go on to the messages service, which decides about them.
    assert.deepEqual(PostMessageDataSchema.parse({ source: 'hi', extra: 1 }), {
      source: 'hi',
      extra: 1,
    });
  });
});
