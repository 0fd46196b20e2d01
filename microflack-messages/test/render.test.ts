import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { escapeHtml, renderMarkdown } from '../src/render.js';

describe('renderMarkdown', () => {
  it('renders the original example exactly, with no wrapping paragraph', () => {
    assert.equal(renderMarkdown('hello *world*!'), 'hello <em>world</em>!');
    assert.equal(renderMarkdown('*hello* world!'), '<em>hello</em> world!');
  });

  it('keeps the allowed inline tags: strong, code, b, i, abbr with its title', () => {
    assert.equal(renderMarkdown('**bold** `x < y`'), '<strong>bold</strong> <code>x &lt; y</code>');
    assert.equal(
      renderMarkdown('<b>b</b> <i>i</i> <abbr title="HyperText" onclick="x()">HTML</abbr>'),
      '<b>b</b> <i>i</i> <abbr title="HyperText">HTML</abbr>',
    );
  });

  it('turns markdown links into nofollow links', () => {
    assert.equal(
      renderMarkdown('[docs](https://example.com/a?b=1&c=2)'),
      '<a href="https://example.com/a?b=1&amp;c=2" rel="nofollow">docs</a>',
    );
  });

  it('links bare URLs, bare domains and e-mail addresses, as the original', () => {
    assert.equal(
      renderMarkdown('hello http://foo.com!'),
      'hello <a href="http://foo.com" rel="nofollow">http://foo.com</a>!',
    );
    assert.equal(
      renderMarkdown('hello foo.com!'),
      'hello <a href="http://foo.com" rel="nofollow">foo.com</a>!',
    );
    assert.equal(
      renderMarkdown('mail ada@example.com'),
      'mail <a href="mailto:ada@example.com" rel="nofollow">ada@example.com</a>',
    );
  });

  it('drops <script> with its content', () => {
    assert.equal(renderMarkdown('<script>alert(1)</script>hi'), 'hi');
    assert.equal(renderMarkdown('a<style>body{}</style>b'), 'ab');
  });

  it('drops event handlers: onerror images, onload SVG', () => {
    assert.equal(renderMarkdown('x<img src=x onerror=alert(1)>y'), 'xy');
    assert.equal(renderMarkdown('<svg onload=alert(1)><circle r="1"/></svg>t'), 't');
    assert.equal(renderMarkdown('<em onmouseover="alert(1)">e</em>'), '<em>e</em>');
    assert.equal(renderMarkdown('<svg><a xlink:href="javascript:alert(1)">s</a></svg>'), 's');
  });

  it('never keeps a javascript:, data: or vbscript: link, however it is spelled', () => {
    for (const source of [
      '[x](javascript:alert(1))',
      '<a href="javascript:alert(1)">x</a>',
      '<a href="java&#x09;script:alert(1)">x</a>',
      '<a href=" JaVaScRiPt:alert(1)">x</a>',
      '<a href="data:text/html,<script>alert(1)</script>">x</a>',
      '<a href="vbscript:msgbox(1)">x</a>',
      '<a href="//evil.example/">x</a>',
    ]) {
      const html = renderMarkdown(source);
      // Shown as text at most: no link element, no attribute carrying the URL.
      assert.doesNotMatch(html, /<a\b|href=/i, `${source} → ${html}`);
    }
  });

  // Issue 18, item 9: a link always has visible text and the href the user meant.
  it('gives a link around an image, or with no text, visible text', () => {
    assert.equal(
      renderMarkdown('[![i](http://x.com/i.png)](http://y.com)'),
      '<a href="http://y.com" rel="nofollow">i</a>',
    );
    assert.equal(
      renderMarkdown('[![](http://x.com/i.png)](http://y.com)'),
      '<a href="http://y.com" rel="nofollow">http://x.com/i.png</a>',
    );
    assert.equal(
      renderMarkdown('[](http://y.com)'),
      '<a href="http://y.com" rel="nofollow">http://y.com</a>',
    );
    assert.equal(renderMarkdown('![a <b>](http://x.com/i.png) text'), 'a &lt;b&gt; text');
  });

  it('links a URL with a userinfo, a port and brackets whole, and leaves out trailing punctuation', () => {
    for (const [source, href] of [
      ['see http://user@127.0.0.1:8080/m now', 'http://user@127.0.0.1:8080/m'],
      ['at http://user:pw@example.com/x.', 'http://user:pw@example.com/x'],
      ['(see https://en.wikipedia.org/wiki/Foo_(bar)).', 'https://en.wikipedia.org/wiki/Foo_(bar)'],
      ['go https://example.com/a?b=1, then', 'https://example.com/a?b=1'],
    ]) {
      const html = renderMarkdown(source as string);
      assert.ok(
        html.includes(`<a href="${href}" rel="nofollow">${href}</a>`),
        `${source} → ${html}`,
      );
    }
  });

  it('keeps text outside the allowed tags, escaped', () => {
    assert.equal(renderMarkdown('<div>a</div> <h1>b</h1> 1 < 2 & 3'), 'a b 1 &lt; 2 &amp; 3');
  });
});

describe('escapeHtml', () => {
  it('escapes markup and both quotes', () => {
    assert.equal(
      escapeHtml(`<a href="x">'&'</a>`),
      '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;',
    );
  });
});
