// The OpenAPI document against what the users, tokens and messages apps really mount: every mounted
// route is documented and every documented route is mounted (express 5 router stacks, walked).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Express } from 'express';
import {
  createAuth,
  type Events,
  type Knex,
  type LbClient,
  type RevocationList,
} from '@microflack/common';
import {
  MESSAGES_MOUNT,
  openApiDocument,
  ROOMS_MOUNT,
  TOKENS_MOUNT,
  USERS_MOUNT,
} from '@microflack/common/api';
import { checksResponses, mountedRoutes, TEST_JWT_SECRET_KEY } from '@microflack/testkit';
import { createApp as createUsersApp } from '@microflack/users/app';
import { createApp as createTokensApp } from '@microflack/tokens/app';
import { createApp as createMessagesApp } from '@microflack/messages/app';
import type { Directory } from '@microflack/messages/directory';

// The apps are only walked, never called: their clients are stand-ins.
const auth = createAuth(TEST_JWT_SECRET_KEY, {} as RevocationList);
const db = {} as Knex;
const events = {} as Events;

// The messages service serves /api/rooms too (registered as the service rooms).
const apps: Array<[string, string[], () => Express]> = [
  ['users', [USERS_MOUNT], () => createUsersApp({ db, auth, events })],
  ['tokens', [TOKENS_MOUNT], () => createTokensApp({ auth, lb: {} as LbClient })],
  [
    'messages',
    [MESSAGES_MOUNT, ROOMS_MOUNT],
    () => createMessagesApp({ db, auth, events, directory: {} as Directory }),
  ],
];

// What every service mounts for the platform, not for API clients (HAProxy's checks, Prometheus):
// never routed to by the load balancer's API paths, and not in the document.
const PLATFORM_ROUTES = ['get /healthz', 'get /metrics'];

function documentedRoutes(): string[] {
  return Object.entries(openApiDocument().paths ?? {}).flatMap(([path, item]) =>
    Object.keys(item as object).map((method) => `${method} ${path}`),
  );
}

describe('the OpenAPI document and the mounted routes', () => {
  const documented = documentedRoutes();

  for (const [name, mounts, create] of apps) {
    it(`${name}: every route mounted under ${mounts.join(' and ')} is documented, and every documented one is mounted`, () => {
      const mounted = mountedRoutes(create()).map((r) => `${r.method} ${r.path}`);
      assert.equal(new Set(mounted).size, mounted.length, `${name} mounts no route twice`);
      const api = mounted.filter((r) => !PLATFORM_ROUTES.includes(r));
      assert.deepEqual(
        mounted.filter((r) => PLATFORM_ROUTES.includes(r)).sort(),
        [...PLATFORM_ROUTES].sort(),
      );
      for (const route of api) {
        assert.ok(
          mounts.some((m) => route.split(' ')[1]?.startsWith(m)),
          `${route} is under ${mounts.join(' or ')}`,
        );
      }
      const ours = documented.filter((r) => {
        const path = r.split(' ')[1] as string;
        return mounts.some((m) => path === m || path.startsWith(`${m}/`));
      });
      assert.deepEqual([...api].sort(), [...ours].sort());
      assert.ok(api.length >= 3, `${name} mounts its API`);
    });
  }

  it('documents no route that none of the three services mounts', () => {
    const mounted = new Set(
      apps.flatMap(([, , create]) => mountedRoutes(create()).map((r) => `${r.method} ${r.path}`)),
    );
    assert.deepEqual(
      documented.filter((r) => !mounted.has(r)),
      [],
    );
  });

  it('holds every answer of the three services to the document under the test runner', () => {
    assert.equal(process.env.NODE_ENV, 'test', 'scripts/run-tests.mjs sets NODE_ENV=test');
    for (const [name, , create] of apps) assert.ok(checksResponses(create()), name);
  });
});
