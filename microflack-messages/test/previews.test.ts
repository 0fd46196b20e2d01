import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { bearer, startStack, type TestStack } from '@microflack/testkit';
import request from 'supertest';
import { isAddressAllowed } from '../src/address-policy.js';
import { DEFAULT_FETCH_SETTINGS, fetchPage, parsePage, PreviewError } from '../src/link-preview.js';
import { openMessagesDb, startMessagesApp, type TestApp } from '@microflack/testkit/apps';
import { subscribe } from '@microflack/testkit/socketio';

const MB = 1024 * 1024;

/** A local site with the pages the previews are tried on; it records every request it gets. */
async function startSite() {
  const hits: string[] = [];
  const state = { hang: false };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://site');
    hits.push(url.pathname + url.search);
    const html = (body: string) =>
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(body);
    switch (url.pathname) {
      case '/page':
        return html(
          '<html><head><title>foo</title><meta name="blah" content="blah">' +
            '<meta name="description" content="foo descr"></head><body>x</body></html>',
        );
      case '/title-only':
        return html('<html><head><title>bar</title></head></html>');
      case '/description-only':
        return html('<html><head><meta name="Description" content="baz descr"></head></html>');
      case '/escape':
        return html(
          '<title>Tom &amp; Jerry &lt;3 <b>x</b></title>' +
            '<meta name="description" content="&quot;><script>alert(1)</script><img src=x onerror=alert(2)>">',
        );
      case '/hang':
        return; // never answers
      case '/toggle':
        return state.hang ? undefined : html('<title>back again</title>');
      case '/huge': {
        // The title comes first; a description only after 4 MB, beyond the 1 MB cap.
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.write('<html><head><title>huge page</title>');
        const filler = `<!--${'x'.repeat(64 * 1024 - 7)}-->`;
        let sent = 0;
        const more = () => {
          while (sent < 5 * MB && !res.destroyed) {
            sent += filler.length;
            if (sent > 4 * MB && sent <= 4 * MB + filler.length)
              res.write('<meta name="description" content="late">');
            if (!res.write(filler)) return void res.once('drain', more);
          }
          res.end();
        };
        res.on('error', () => undefined);
        return more();
      }
      case '/r': {
        const n = Number(url.searchParams.get('n'));
        const location = n > 0 ? `/r?n=${n - 1}` : '/page';
        return res.writeHead(302, { Location: location }).end();
      }
      case '/to':
        return res.writeHead(301, { Location: url.searchParams.get('url') ?? '/' }).end();
      case '/json':
        return res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"title":"no"}');
      case '/missing':
        return res.writeHead(404, { 'Content-Type': 'text/html' }).end('<title>not found</title>');
      default:
        return res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    hits,
    state,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

type Site = Awaited<ReturnType<typeof startSite>>;

async function postAndSettle(t: TestApp, source: string, userId = 1) {
  const res = await request(t.app)
    .post('/api/messages')
    .set(bearer(t.token(userId)))
    .send({ source });
  assert.equal(res.status, 201, res.text);
  const rendered: string = res.body.html;
  await t.app.previewer.idle();
  const now = await request(t.app).get(res.headers.location as string);
  const row = await t.db('messages').where({ id: res.body.id }).first('preview_pending');
  return {
    created: res.body,
    rendered,
    html: now.body.html as string,
    body: now.body,
    pending: Boolean(row.preview_pending),
  };
}

describe('link previews (local site, private addresses allowed)', () => {
  let stack: TestStack;
  let site: Site;
  let t: TestApp;
  before(async () => {
    stack = await startStack();
    site = await startSite();
    t = await startMessagesApp(stack, 'mariadb', { allowPrivate: true, timeoutMs: 1000 });
  });
  after(async () => {
    await t.close();
    await site.close();
    await stack.stop();
  });

  it('answers 201 with the rendered html first, then appends title and description (the original scenario)', async () => {
    const url = site.url('/page');
    const r = await postAndSettle(t, `hello ${url}!`);
    const link = `<a href="${url}" rel="nofollow">${url}</a>`;
    assert.equal(r.rendered, `hello ${link}!`);
    assert.equal(
      r.html,
      `hello ${link}!<blockquote><p><a href="${url}">foo</a></p><p>foo descr</p></blockquote>`,
    );
    assert.equal(r.pending, false);
    assert.ok(r.body.updated_at >= r.created.updated_at);
  });

  it('uses the URL for a missing title and "No description found." for a missing description', async () => {
    const titleOnly = site.url('/title-only');
    const a = await postAndSettle(t, `see ${titleOnly}`);
    assert.ok(
      a.html.endsWith(
        `<blockquote><p><a href="${titleOnly}">bar</a></p><p>No description found.</p></blockquote>`,
      ),
    );
    const descOnly = site.url('/description-only');
    const b = await postAndSettle(t, `see ${descOnly}`);
    assert.ok(
      b.html.endsWith(
        `<blockquote><p><a href="${descOnly}">${descOnly}</a></p><p>baz descr</p></blockquote>`,
      ),
    );
  });

  it('escapes the title and description of the page', async () => {
    const url = site.url('/escape');
    const r = await postAndSettle(t, url);
    assert.ok(
      r.html.endsWith(
        `<blockquote><p><a href="${url}">Tom &amp; Jerry &lt;3 &lt;b&gt;x&lt;/b&gt;</a></p>` +
          '<p>&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;</p></blockquote>',
      ),
      r.html,
    );
    assert.doesNotMatch(r.html, /<script|<img/);
  });

  it('previews at most 3 links per message, and fetches no more', async () => {
    const urls = ['/page?1', '/page?2', '/page?3', '/page?4'].map((p) => site.url(p));
    const r = await postAndSettle(t, urls.join(' and '));
    assert.equal(r.html.split('<blockquote>').length - 1, 3);
    assert.ok(site.hits.includes('/page?3'));
    assert.ok(!site.hits.includes('/page?4'));
  });

  it('leaves the message as it is when the page never answers (after the timeout)', async () => {
    const url = site.url('/hang');
    const started = Date.now();
    const r = await postAndSettle(t, `slow ${url}`);
    const tookMs = Date.now() - started;
    assert.equal(r.html, r.rendered);
    assert.equal(r.body.updated_at, r.created.updated_at);
    assert.equal(r.pending, false);
    assert.ok(tookMs >= 900 && tookMs < 5000, `${tookMs} ms`);
  });

  it('reads at most 1 MB of a 5 MB page: the title at the start counts, a description at 4 MB does not', async () => {
    const url = site.url('/huge');
    const started = Date.now();
    const r = await postAndSettle(t, url);
    assert.ok(
      r.html.endsWith(
        `<p><a href="${url}">huge page</a></p><p>No description found.</p></blockquote>`,
      ),
      r.html,
    );
    assert.ok(Date.now() - started < 3000);
    const capped = await fetchPage(url, {
      ...DEFAULT_FETCH_SETTINGS,
      allowPrivate: true,
      maxBytes: 10,
    });
    assert.equal(capped, '<html><hea');
  });

  it('follows up to 3 redirects, and gives up on a 4th', async () => {
    const three = site.url('/r?n=2');
    const ok = await postAndSettle(t, three);
    assert.ok(
      ok.html.endsWith(`<p><a href="${three}">foo</a></p><p>foo descr</p></blockquote>`),
      ok.html,
    );
    const four = site.url('/r?n=3');
    const before = site.hits.length;
    const tooMany = await postAndSettle(t, four);
    assert.equal(tooMany.html, tooMany.rendered);
    assert.deepEqual(site.hits.slice(before), ['/r?n=3', '/r?n=2', '/r?n=1', '/r?n=0']);
  });

  it('makes no preview of an error page, a non-HTML page or a redirect to a non-http scheme', async () => {
    for (const path of [
      '/missing',
      '/json',
      `/to?url=${encodeURIComponent('file:///etc/passwd')}`,
    ]) {
      const r = await postAndSettle(t, site.url(path));
      assert.equal(r.html, r.rendered, path);
    }
    await assert.rejects(
      fetchPage(site.url('/to?url=ftp%3A%2F%2F127.0.0.1%2F'), {
        ...DEFAULT_FETCH_SETTINGS,
        allowPrivate: true,
      }),
      { name: 'PreviewError', message: 'scheme not allowed' },
    );
  });

  it('previews again after an edit, from the new links', async () => {
    const first = await postAndSettle(t, site.url('/page'));
    const title = site.url('/title-only');
    await request(t.app)
      .put(first.body._links.self)
      .set(bearer(t.token(1)))
      .send({ source: `now ${title}` })
      .expect(204);
    await t.app.previewer.idle();
    const html = (await request(t.app).get(first.body._links.self)).body.html as string;
    assert.equal(
      html,
      `now <a href="${title}" rel="nofollow">${title}</a><blockquote><p><a href="${title}">bar</a></p><p>No description found.</p></blockquote>`,
    );
  });

  it('emits updated_model for the preview, with the html that has it', async () => {
    const sub = await subscribe(stack.redis);
    try {
      const url = site.url('/page?event');
      const res = await request(t.app)
        .post('/api/messages')
        .set(bearer(t.token(1)))
        .send({ source: url });
      const withPreview = await sub.waitForEvent(
        'preview event',
        // The Redis is shared with other test files: match this message's own source too.
        (e) =>
          e.model.id === res.body.id &&
          e.model.source === url &&
          String(e.model.html).includes('<blockquote>'),
      );
      assert.equal(withPreview.class, 'Message');
      assert.deepEqual(
        withPreview.model,
        (await request(t.app).get(res.headers.location as string)).body,
      );
      assert.ok(
        sub.events.some((e) => e.model.id === res.body.id && e.model.html === res.body.html),
        'create event too',
      );
    } finally {
      await sub.close();
    }
  });
});

describe('link previews refuse private addresses (SSRF)', () => {
  let stack: TestStack;
  let site: Site;
  let t: TestApp;
  before(async () => {
    stack = await startStack();
    site = await startSite();
    t = await startMessagesApp(stack, 'sqlite', { allowPrivate: false, timeoutMs: 3000 });
  });
  after(async () => {
    await t.close();
    await site.close();
    await stack.stop();
  });

  const strict = { ...DEFAULT_FETCH_SETTINGS, allowPrivate: false };

  it('refuses loopback, private, metadata and IPv6 loopback targets before connecting', async () => {
    const targets = [
      site.url('/page'),
      `http://localhost:${site.port}/page`,
      `http://[::1]:${site.port}/page`,
      `http://[::ffff:127.0.0.1]:${site.port}/page`,
      `http://0x7f000001:${site.port}/page`,
      `http://2130706433:${site.port}/page`,
      `http://127.1:${site.port}/page`,
      'http://10.0.0.1/',
      'http://169.254.169.254/latest/meta-data/',
      'http://192.168.1.1/',
      'http://100.64.0.1/',
      'http://0.0.0.0/',
      'https://[fd00::1]/',
      'http://[fe80::1]/',
    ];
    for (const url of targets) {
      const started = Date.now();
      await assert.rejects(
        fetchPage(url, strict),
        { name: 'PreviewError', message: 'address not allowed' },
        url,
      );
      // Refused, not timed out: 10.0.0.1 and 169.254.169.254 would take the whole 3 s to fail.
      assert.ok(Date.now() - started < 500, url);
    }
    assert.deepEqual(site.hits, []);
  });

  it('leaves messages linking to those targets unchanged, and fetches none', async () => {
    const r = await postAndSettle(
      t,
      [
        site.url('/page'),
        `http://localhost:${site.port}/page`,
        'http://169.254.169.254/latest',
      ].join(' '),
    );
    assert.equal(r.html, r.rendered);
    assert.equal(r.pending, false);
    const v6 = await postAndSettle(t, `http://[::1]:${site.port}/page and http://10.0.0.1/`);
    assert.equal(v6.html, v6.rendered);
    assert.deepEqual(site.hits, []);
  });

  it('refuses a redirect to loopback when only the first host is allowed', async () => {
    const settings = { ...strict, allowAddresses: ['127.0.0.1'] };
    const target = `http://127.0.0.2:${site.port}/page`;
    await assert.rejects(fetchPage(site.url(`/to?url=${encodeURIComponent(target)}`), settings), {
      name: 'PreviewError',
      message: 'address not allowed',
    });
    await assert.rejects(
      fetchPage(site.url(`/to?url=${encodeURIComponent('http://169.254.169.254/')}`), settings),
      { message: 'address not allowed' },
    );
    assert.equal(site.hits.filter((h) => h.startsWith('/to')).length, 2);
    assert.equal(site.hits.filter((h) => h === '/page').length, 0);
    // The allowed host itself is fetched: the refusal above is about the redirect target.
    assert.match(await fetchPage(site.url('/page'), settings), /foo descr/);
  });

  it('classifies addresses: public unicast allowed, the special ranges refused', () => {
    const policy = { allowPrivate: false };
    for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '1.1.1.1']) {
      assert.equal(isAddressAllowed(a, policy), true, a);
    }
    for (const a of [
      '127.0.0.1',
      '127.255.255.254',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.0.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::',
      '::1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '64:ff9b::a00:1',
      '2002:7f00:1::',
      'fc00::1',
      'fd12:3456::1',
      'fe80::1',
      'ff02::1',
      'not-an-ip',
    ]) {
      assert.equal(isAddressAllowed(a, policy), false, a);
    }
    assert.equal(
      isAddressAllowed('10.1.2.3', { allowPrivate: false, allowAddresses: ['10.1.2.3'] }),
      true,
    );
    assert.equal(isAddressAllowed('10.1.2.3', { allowPrivate: true }), true);
  });

  it('refuses a host that does not resolve, and a non-http URL', async () => {
    await assert.rejects(
      fetchPage('http://does-not-exist.invalid/', strict),
      (err) => err instanceof PreviewError,
    );
    await assert.rejects(fetchPage('ftp://example.com/', strict), {
      message: 'scheme not allowed',
    });
  });
});

describe('parsePage', () => {
  it('takes the first title and the meta description, decoding entities and collapsing whitespace', () => {
    assert.deepEqual(
      parsePage(
        '<TITLE>\n  A &amp;\n B </TITLE><title>second</title><META NAME="DESCRIPTION" CONTENT=" d  e ">',
      ),
      { title: 'A & B', description: 'd e' },
    );
    assert.deepEqual(parsePage('<p>nothing here'), { title: undefined, description: undefined });
  });
});

describe('pending previews after a crash', () => {
  let stack: TestStack;
  let site: Site;
  before(async () => {
    stack = await startStack();
    site = await startSite();
  });
  after(async () => {
    await site.close();
    await stack.stop();
  });

  for (const kind of ['mariadb', 'sqlite'] as const) {
    it(`are finished by the next instance at start (${kind})`, async () => {
      const db = await openMessagesDb(kind);
      const first = await startMessagesApp(
        stack,
        kind,
        { allowPrivate: true, timeoutMs: 20000 },
        db,
      );
      site.state.hang = true;
      const url = site.url(`/toggle?${kind}`);
      const res = await request(first.app)
        .post('/api/messages')
        .set(bearer(first.token(1)))
        .send({ source: url });
      assert.equal(res.status, 201);
      await new Promise((r) => setTimeout(r, 200));
      // The instance stops while the fetch hangs, as a crash would cut it short.
      await first.app.previewer.close();
      const row = await db('messages').where({ id: res.body.id }).first('html', 'preview_pending');
      assert.equal(Boolean(row.preview_pending), true);
      assert.equal(row.html, res.body.html);

      site.state.hang = false;
      const second = await startMessagesApp(
        stack,
        kind,
        { allowPrivate: true, timeoutMs: 2000 },
        db,
      );
      const sub = await subscribe(stack.redis);
      try {
        assert.equal(await second.app.previewer.resumePending(), 1);
        await second.app.previewer.idle();
        const after = await request(second.app).get(res.headers.location as string);
        assert.equal(
          after.body.html,
          `${res.body.html}<blockquote><p><a href="${url}">back again</a></p><p>No description found.</p></blockquote>`,
        );
        const done = await db('messages').where({ id: res.body.id }).first('preview_pending');
        assert.equal(Boolean(done.preview_pending), false);
        await sub.waitForEvent(
          'resumed preview event',
          (e) => e.model.id === res.body.id && e.model.html === after.body.html,
        );
        assert.equal(await second.app.previewer.resumePending(), 0, 'nothing left pending');
      } finally {
        await sub.close();
        await second.close();
      }
    });
  }
});
