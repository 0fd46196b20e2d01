// The ui service's HTTP surface: the page, the hashed assets and their cache headers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import request from 'supertest';
import { createApp } from '../src/app.js';
import { loadAssets } from '../src/assets.js';
import { openApiDocument } from '@microflack/common/api';

describe('ui app', () => {
  const assets = loadAssets();
  const app = createApp({ assets, mode: 'socketio' });

  it('GET / answers the page, not cached, naming the hashed assets', async () => {
    const res = await request(app).get('/').expect(200);
    assert.match(res.headers['content-type'] ?? '', /text\/html/);
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.match(res.headers['content-security-policy'] ?? '', /script-src 'self'/);
    assert.ok(res.text.includes(`/static/${assets.script}`));
    assert.ok(res.text.includes(`/static/${assets.style}`));
    assert.match(res.text, /data-mode="socketio"/);
    assert.match(assets.script, /^app-[A-Z0-9]{8}\.js$/);
    assert.match(assets.style, /^style-[A-Z0-9]{8}\.css$/);
  });

  it('GET / tells the client to poll when built for polling', async () => {
    const res = await request(createApp({ assets, mode: 'polling' }))
      .get('/')
      .expect(200);
    assert.match(res.text, /data-mode="polling"/);
  });

  it('names nothing outside the platform (no CDN)', async () => {
    const res = await request(app).get('/').expect(200);
    assert.doesNotMatch(res.text, /(src|href)="(https?:)?\/\//);
  });

  it('serves the hashed script and stylesheet with a long immutable cache', async () => {
    for (const [file, type] of [
      [assets.script, /javascript/],
      [assets.style, /css/],
    ] as const) {
      const res = await request(app).get(`/static/${file}`).expect(200);
      assert.match(res.headers['content-type'] ?? '', type);
      assert.match(res.headers['cache-control'] ?? '', /max-age=31536000/);
      assert.match(res.headers['cache-control'] ?? '', /immutable/);
    }
  });

  it('bundles socket.io-client into the script', async () => {
    const res = await request(app).get(`/static/${assets.script}`).expect(200);
    assert.match(res.text, /EIO/); // engine.io-client, bundled rather than fetched
    assert.doesNotMatch(res.text, /https?:\/\/(cdn|unpkg|cdnjs)/);
  });

  it('answers 404 JSON for an unknown asset', async () => {
    const res = await request(app).get('/static/app-NOPE.js').expect(404);
    assert.deepEqual(res.body, { error: 'not found' });
  });

  it('GET /api/openapi.json answers the document as JSON, data only', async () => {
    const res = await request(app).get('/api/openapi.json').expect(200);
    assert.match(res.headers['content-type'] ?? '', /^application\/json; charset=utf-8$/);
    assert.equal(
      res.headers['content-security-policy'],
      "default-src 'none'; frame-ancestors 'none'",
    );
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.deepEqual(res.body, JSON.parse(JSON.stringify(openApiDocument())));
  });

  it('GET /api/docs answers the reference page under the ui policy, narrowed', async () => {
    const res = await request(app).get('/api/docs').expect(200);
    assert.match(res.headers['content-type'] ?? '', /text\/html/);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    const csp = res.headers['content-security-policy'] ?? '';
    const page = (await request(app).get('/').expect(200)).headers['content-security-policy'] ?? '';
    const directives = (policy: string) =>
      Object.fromEntries(policy.split('; ').map((d) => [d.split(' ')[0], d]));
    // The page's policy but for images: no inline script or style, nothing from elsewhere.
    assert.deepEqual(
      { ...directives(csp), 'img-src': undefined },
      { ...directives(page), 'img-src': undefined },
    );
    assert.equal(directives(csp)['img-src'], "img-src 'self' data:");
    assert.doesNotMatch(csp, /unsafe/);
    assert.doesNotMatch(res.text, /(src|href)="(https?:)?\/\//);
    assert.doesNotMatch(res.text, /<script>|style=/);
    const assets = [...res.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    assert.equal(assets.length, 4);
    for (const asset of assets) {
      const file = await request(app).get(asset).expect(200);
      assert.match(file.headers['content-type'] ?? '', /javascript|css|png/, asset);
      assert.equal(file.headers['x-content-type-options'], 'nosniff');
    }
  });

  it("serves the reference's own setup and Swagger UI's files, and nothing else of the package", async () => {
    const init = await request(app).get('/api/docs/init.js').expect(200);
    assert.match(init.headers['content-type'] ?? '', /^text\/javascript/);
    assert.match(init.text, /url: "\/api\/openapi.json"/);
    assert.match(init.text, /validatorUrl: null/);
    const page = await request(app).get('/api/docs').expect(200);
    const bundle = /src="([^"]+swagger-ui-bundle\.js)"/.exec(page.text)?.[1] as string;
    const res = await request(app).get(bundle).expect(200);
    assert.match(res.headers['cache-control'] ?? '', /immutable/);
    const dir = bundle.slice(0, bundle.lastIndexOf('/'));
    for (const other of [
      'index.html',
      'swagger-initializer.js',
      'package.json',
      '..%2fpackage.json',
    ]) {
      const refused = await request(app).get(`${dir}/${other}`).expect(404);
      assert.deepEqual(refused.body, { error: 'not found' });
    }
  });
});
