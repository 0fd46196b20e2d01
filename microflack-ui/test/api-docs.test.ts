// The API's description through a real load balancer: GET /api/openapi.json and the reference at
// /api/docs, rendered in Chromium from the platform alone; and the API answering as it says.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { apiOperations, tokensApi } from '@microflack/common/api';
import { basic, bearer } from '@microflack/testkit';
import { startPlatform, type Platform } from '@microflack/testkit/platform';
import { launchChromium } from '@microflack/testkit/browser';

const ARTIFACTS = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../test-artifacts',
);

interface Doc {
  openapi: string;
  paths: Record<
    string,
    Record<string, { operationId: string; responses: Record<string, unknown> }>
  >;
}

describe('the API description through the load balancer', () => {
  let platform: Platform;
  let browser: Browser;

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    [platform, browser] = await Promise.all([
      // Socket.IO plays no part here.
      startPlatform({ services: ['users', 'tokens', 'messages', 'ui'] }),
      launchChromium(),
    ]);
  });

  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  async function fetchDocument(): Promise<Doc> {
    const res = await fetch(`${platform.url}/api/openapi.json`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.match(res.headers.get('x-microflack-instance') ?? '', /^ui\//);
    return (await res.json()) as Doc;
  }

  it("GET /api/openapi.json is the ui's JSON, listing every path and method", async () => {
    const doc = await fetchDocument();
    assert.equal(doc.openapi, '3.1.0');
    assert.deepEqual(Object.keys(doc.paths).sort(), [
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
    for (const op of apiOperations) {
      assert.equal(doc.paths[op.path]?.[op.method]?.operationId, op.operationId);
    }
  });

  it('the API answers as the document says (the services check their answers too)', async () => {
    const doc = await fetchDocument();
    const nickname = `doc${Date.now() % 1e6}`;
    type Init = { body?: string; headers?: Record<string, string> };
    const calls: Array<[string, string, Init, number]> = [
      ['post', '/api/users', { body: JSON.stringify({ nickname, password: 'pw' }) }, 201],
      ['post', '/api/users', { body: JSON.stringify({ nickname: '' }) }, 400],
      ['post', '/api/tokens', { headers: basic(nickname, 'wrong') }, 401],
    ];
    const answers: Array<{ op: string; status: number; body: unknown }> = [];
    async function call(method: string, url: string, init: Init = {}) {
      const res = await fetch(platform.url + url, {
        ...init,
        method: method.toUpperCase(),
        headers: { 'Content-Type': 'application/json', ...init.headers },
      });
      const text = await res.text();
      const body = text ? JSON.parse(text) : undefined;
      answers.push({ op: `${method} ${url}`, status: res.status, body });
      return { status: res.status, body };
    }
    for (const [method, url, init, status] of calls) {
      assert.equal((await call(method, url, init)).status, status, `${method} ${url}`);
    }
    const { body: token } = await call('post', '/api/tokens', { headers: basic(nickname, 'pw') });
    const auth = bearer((token as { token: string }).token);
    assert.equal((await call('get', '/api/tokens', { headers: auth })).status, 200);
    const posted = await call('post', '/api/messages', {
      headers: auth,
      body: JSON.stringify({ source: 'described' }),
    });
    assert.equal(posted.status, 201);
    assert.equal((await call('get', '/api/messages?limit=abc')).status, 400);
    assert.equal((await call('get', '/api/messages?limit=1')).status, 200);
    assert.equal((await call('get', '/api/users?online=1', { headers: auth })).status, 200);
    assert.equal((await call('delete', '/api/tokens?all=1', { headers: auth })).status, 204);
    for (const { op, status, body } of answers) {
      const [method, url] = op.split(' ') as [string, string];
      const path = url.split('?')[0] as string;
      const documented = doc.paths[path]?.[method];
      assert.ok(documented?.responses[String(status)], `${op} answered a documented ${status}`);
      assert.notDeepEqual(body, { error: 'response does not match its schema' }, op);
    }
  });

  it('/api/docs renders the reference in Chromium, from the platform alone', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      const requests: string[] = [];
      const errors: string[] = [];
      page.on('request', (req) => requests.push(req.url()));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (err) => errors.push(err.message));
      await page.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => {
          console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
        });
      });
      const res = await page.goto(`${platform.url}/api/docs`);
      assert.equal(res?.status(), 200);
      // The POST /api/tokens operation, by its summary.
      const summary = page
        .locator('.opblock-summary-description', { hasText: tokensApi.createToken.summary })
        .first();
      await summary.waitFor({ timeout: 30000 });
      assert.equal(await page.locator('.opblock').count(), apiOperations.length);

      // Try GET /api/messages from the page: a same-origin call, through the load balancer.
      const list = page.locator('#operations-messages-listMessages');
      await list.locator('.opblock-summary-control').click();
      await list.getByRole('button', { name: 'Try it out' }).click();
      await list.getByRole('button', { name: 'Execute' }).click();
      await list.locator('.live-responses-table .response-col_status', { hasText: '200' }).waitFor({
        timeout: 15000,
      });
      await summary.scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(ARTIFACTS, 'api-docs.png') });

      assert.ok(requests.length >= 4, `the page loaded its files: ${requests.join(' ')}`);
      const outside = requests.filter(
        (u) => !u.startsWith(`${platform.url}/`) && !u.startsWith('data:'),
      );
      assert.deepEqual(outside, [], 'no request leaves the platform');
      assert.ok(requests.includes(`${platform.url}/api/openapi.json`));
      assert.deepEqual(errors, [], 'no script error and no CSP violation');
      assert.ok(fs.statSync(path.join(ARTIFACTS, 'api-docs.png')).size > 10000);
    } finally {
      await context.close();
    }
  });
});
