// The documentation stays true to the repository: its links resolve inside it, nothing points at
// the old design folder outside it, and every environment variable and route in the code is in docs/.
import { messagesApi, roomsApi, tokensApi, usersApi, type Operation } from '@microflack/common/api';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import GithubSlugger from 'github-slugger';
import MarkdownIt, { type Token } from 'markdown-it';
import { BaseEnv } from '@microflack/common';
import { messagesConfig } from '@microflack/messages/config';
import { uiConfig } from '@microflack/ui/config';
import { usersConfig } from '@microflack/users/config';
import { LbEnv } from '@microflack/lb/config';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');

// Tracked files plus new ones not ignored, so that a page is checked before its first commit.
const files = execFileSync(
  'git',
  ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--deduplicate'],
  { cwd: root, encoding: 'utf8' },
)
  .split('\0')
  .filter((f) => f !== '' && fs.existsSync(path.join(root, f)));
const fileSet = new Set(files);
const markdownFiles = files.filter((f) => f.endsWith('.md'));

const md = new MarkdownIt();

function inlineTokens(file: string): { headings: Token[]; links: string[] } {
  const tokens = md.parse(read(file), {});
  const headings: Token[] = [];
  const links: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as Token;
    if (t.type === 'heading_open') headings.push(tokens[i + 1] as Token);
    for (const c of t.children ?? []) {
      const href =
        c.type === 'link_open' ? c.attrGet('href') : c.type === 'image' ? c.attrGet('src') : null;
      if (href !== null) links.push(String(href));
    }
  }
  return { headings, links };
}

/** The anchors GitHub gives a page's headings: the slug of each heading's text. */
function anchorsOf(file: string): Set<string> {
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  for (const h of inlineTokens(file).headings) {
    const text = (h.children ?? [])
      .map((c) => (c.type === 'text' || c.type === 'code_inline' ? c.content : ''))
      .join('');
    anchors.add(slugger.slug(text));
  }
  return anchors;
}

/** Why a relative link from `file` is broken, or undefined when it resolves. */
function brokenLink(file: string, href: string): string | undefined {
  const hash = href.indexOf('#');
  const target = decodeURI(hash < 0 ? href : href.slice(0, hash));
  const anchor = hash < 0 ? undefined : decodeURIComponent(href.slice(hash + 1));
  const resolved =
    target === ''
      ? file
      : path.posix.normalize(
          target.startsWith('/')
            ? target.slice(1)
            : path.posix.join(path.posix.dirname(file), target),
        );
  if (resolved.startsWith('..')) return 'points outside the repository';
  const clean = resolved.replace(/\/$/, '');
  const isDir = files.some((f) => f.startsWith(`${clean}/`));
  if (!fileSet.has(clean) && !isDir) return `${clean} is not a file of the repository`;
  if (anchor !== undefined && anchor !== '') {
    if (!clean.endsWith('.md')) return `#${anchor} into a file that is not markdown`;
    if (!anchorsOf(clean).has(anchor)) return `${clean} has no heading #${anchor}`;
  }
  return undefined;
}

describe('markdown links', () => {
  it('finds the pages to check: README.md and docs/', () => {
    for (const f of ['README.md', 'docs/README.md', 'docs/ARCHITECTURE.md', 'docs/CONTRIBUTING.md'])
      assert.ok(markdownFiles.includes(f), `${f} exists`);
    assert.ok(markdownFiles.filter((f) => f.startsWith('docs/contracts/')).length >= 4);
  });

  it('resolves every relative link (and #anchor) of every markdown file to the repository', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of markdownFiles) {
      for (const href of inlineTokens(file).links) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('//')) continue;
        checked++;
        const why = brokenLink(file, href);
        if (why) broken.push(`${file}: (${href}) ${why}`);
      }
    }
    assert.deepEqual(broken, []);
    assert.ok(checked > 20, `only ${checked} links checked`);
  });

  it('reports a missing file and a missing anchor (the checker itself)', () => {
    assert.match(brokenLink('README.md', 'docs/nowhere.md') ?? '', /not a file/);
    assert.match(
      brokenLink('README.md', 'docs/ARCHITECTURE.md#no-such-heading') ?? '',
      /no heading/,
    );
    assert.match(brokenLink('docs/README.md', '../../outside.md') ?? '', /outside/);
    assert.equal(brokenLink('docs/README.md', 'ARCHITECTURE.md'), undefined);
  });
});

describe('the old design folder', () => {
  it('is referred to by no file of the repository', () => {
    const needle = ['..', 'shared'].join('/');
    const hits = files.filter((f) => fs.readFileSync(path.join(root, f)).includes(needle));
    assert.deepEqual(hits, []);
  });
});

describe('docs/contracts/configuration.md', () => {
  const doc = read('docs/contracts/configuration.md');
  const schemas: Record<string, object> = {
    'microflack-common BaseEnv': BaseEnv.shape,
    'microflack-users usersConfig': usersConfig,
    'microflack-messages messagesConfig': messagesConfig,
    'microflack-ui uiConfig': uiConfig,
    'microflack-admin/lb LbEnv': LbEnv,
  };

  it('names every variable of every config schema', () => {
    const missing: string[] = [];
    for (const [schema, shape] of Object.entries(schemas)) {
      for (const name of Object.keys(shape)) {
        if (!doc.includes(`\`${name}\``)) missing.push(`${name} (${schema})`);
      }
    }
    assert.deepEqual(missing, []);
  });

  it('knows every schema: each loadConfig call passes one of the exported shapes above', () => {
    const known = new Set(['', 'usersConfig', 'messagesConfig', 'uiConfig', 'LbEnv']);
    const calls: string[] = [];
    for (const file of files.filter((f) => /^microflack-[a-z]+\/(lb\/)?src\/.*\.ts$/.test(f))) {
      if (file === 'microflack-common/src/config.ts') continue; // where loadConfig is defined
      for (const m of read(file).matchAll(/\bloadConfig\(\s*([^,)]*)/g)) {
        const arg = (m[1] as string).trim();
        calls.push(`${file}: ${arg || '(none)'}`);
        assert.ok(
          known.has(arg),
          `${file} passes "${arg}" to loadConfig: export it and test it here`,
        );
      }
    }
    assert.ok(calls.length >= 6, `found only ${calls.join(', ')}`);
  });
});

describe('docs/contracts/rest.md', () => {
  const doc = read('docs/contracts/rest.md');
  const documented = new Set<string>();
  for (const line of doc.split('\n')) {
    if (!/^#{2,4} /.test(line)) continue;
    for (const m of line.matchAll(/\b(GET|POST|PUT|DELETE|PATCH) (\/[^\s,]*)/g))
      documented.add(`${m[1]} ${m[2]}`);
  }

  /**
   * `METHOD /path` for each operation of a service in the REST contract (@microflack/common/api).
   * That the express apps mount exactly these is checked by microflack-ui/test/api-routes.test.ts.
   */
  function mounted(service: 'users' | 'tokens' | 'messages' | 'rooms'): {
    prefix: string;
    routes: string[];
  } {
    const ops: Operation[] = Object.values(
      { users: usersApi, tokens: tokensApi, messages: messagesApi, rooms: roomsApi }[service],
    );
    const prefix = ops[0]?.mount as string;
    const routes = ops.map(
      (op) => `${op.method.toUpperCase()} ${op.mount}${op.route === '/' ? '' : op.route}`,
    );
    return { prefix, routes };
  }

  it('documents every route users, tokens, messages and rooms mount, and no other under their prefixes', () => {
    const services = (['users', 'tokens', 'messages', 'rooms'] as const).map(mounted);
    const all = services.flatMap((s) => s.routes);
    assert.ok(all.length >= 13, `found only ${all.join(', ')}`);
    assert.deepEqual(
      all.filter((r) => !documented.has(r)),
      [],
    );
    const prefixes = services.map((s) => s.prefix);
    const extra = [...documented].filter(
      (r) => prefixes.some((p) => r.split(' ')[1]?.startsWith(p)) && !all.includes(r),
    );
    assert.deepEqual(extra, []);
  });

  it('documents the routes every service app has, and the ui pages', () => {
    const sources = ['microflack-common/src/service.ts', 'microflack-ui/src/app.ts'];
    const routes: string[] = [];
    for (const file of sources) {
      for (const m of read(file).matchAll(/app\.get\(\s*(\[[^\]]*\]|'[^']*')/g)) {
        for (const p of (m[1] as string).matchAll(/'([^']*)'/g)) routes.push(`GET ${p[1]}`);
      }
    }
    assert.ok(routes.includes('GET /healthz') && routes.includes('GET /'), routes.join(', '));
    assert.deepEqual(
      routes.filter((r) => !documented.has(r)),
      [],
    );
  });
});
