// Markdown source to the small, safe HTML subset messages are shown with.
import MarkdownIt from 'markdown-it';
import sanitizeHtml from 'sanitize-html';

const md = new MarkdownIt({ html: true, linkify: true, typographer: false });
// Bare domains such as `foo.com` become links too, as in the original.
md.linkify.set({ fuzzyLink: true, fuzzyEmail: true });

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
