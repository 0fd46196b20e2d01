// Markdown source to the small, safe HTML subset messages are shown with.
import MarkdownIt from 'markdown-it';
import sanitizeHtml from 'sanitize-html';

const md = new MarkdownIt({ html: true, linkify: true, typographer: false });
// Bare domains such as `foo.com` become links too, as in the original.
md.linkify.set({ fuzzyLink: true, fuzzyEmail: true });

// A URL written out with its scheme is linked whole, as the browser would read it: linkify-it stops
// at a userinfo (`http://user@host/` became a link to `http://user`). Trailing punctuation ends the
// sentence, not the URL; a closing bracket stays when it closes one the URL opened (Wikipedia).
const AFTER_SCHEME = /^\/\/[^\s<>"'`]+/;
const OPENER: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
function linkLength(scheme: string) {
  return (text: string, pos: number): number => {
    let url = AFTER_SCHEME.exec(text.slice(pos))?.[0] ?? '';
    for (;;) {
      const last = url.at(-1) ?? '';
      const open = OPENER[last];
      if (last !== '' && '.,;:!?'.includes(last)) url = url.slice(0, -1);
      else if (open && url.split(open).length < url.split(last).length) url = url.slice(0, -1);
      else break;
    }
    try {
      return new URL(scheme + url).host ? url.length : 0;
    } catch {
      return 0;
    }
  };
}
for (const scheme of ['http:', 'https:']) md.linkify.add(scheme, { validate: linkLength(scheme) });

// Images are not shown: an image stands as its description (its alt text, else its address), so that
// a link around one keeps visible text.
md.renderer.rules.image = (tokens, idx) => {
  const token = tokens[idx]!;
  return md.utils.escapeHtml(token.content || String(token.attrGet('src') ?? ''));
};

// A link with no text of its own (`[](http://y.com)`) shows its address.
md.core.ruler.push('visible_link_text', (state) => {
  for (const block of state.tokens) {
    const children = block.children ?? [];
    for (let i = 0; i < children.length; i++) {
      if (children[i]!.type !== 'link_open') continue;
      let j = i + 1;
      let visible = false;
      while (j < children.length && children[j]!.type !== 'link_close') {
        const t = children[j]!;
        if (t.type === 'image' ? t.content || t.attrGet('src') : t.content.trim()) visible = true;
        j++;
      }
      if (visible) continue;
      const text = new state.Token('text', '', 0);
      text.content = String(children[i]!.attrGet('href') ?? '');
      children.splice(j, 0, text);
    }
  }
});

const LINK_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

export function isAllowedLink(href: string | undefined): boolean {
  if (!href) return false;
  try {
    // Absolute URLs only; WHATWG parsing also sees through tabs and entities hidden in a scheme.
    return LINK_PROTOCOLS.has(new URL(href).protocol);
  } catch {
    return false;
  }
}

const sanitizeOptions: sanitizeHtml.IOptions = {
  allowedTags: ['a', 'abbr', 'acronym', 'b', 'code', 'em', 'i', 'strong'],
  allowedAttributes: { a: ['href', 'rel'], abbr: ['title'], acronym: ['title'] },
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesAppliedToAttributes: ['href'],
  allowProtocolRelative: false,
  // Anything else is dropped with its text kept, except script/style-like content, dropped whole.
  disallowedTagsMode: 'discard',
  transformTags: {
    // A link to anywhere else becomes plain text (a `span`, which is not allowed, keeps only its text).
    a: (tagName, attribs): sanitizeHtml.Tag =>
      isAllowedLink(attribs.href)
        ? { tagName, attribs: { href: attribs.href as string, rel: 'nofollow' } }
        : { tagName: 'span', attribs: {} },
  },
};

/** `hello *world*!` → `hello <em>world</em>!`: inline markdown, no wrapping paragraph. */
export function renderMarkdown(source: string): string {
  return sanitizeHtml(md.renderInline(source), sanitizeOptions);
}

/** Text for HTML text and double-quoted attributes. */
export function escapeHtml(s: string): string {
  return s
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}
