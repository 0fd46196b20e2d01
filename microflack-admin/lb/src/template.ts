// A tiny Mustache-like renderer for haproxy.cfg.tmpl that refuses any value able to change the config's shape.
//
// Why not a template library: the config is line-oriented and every value is one HAProxy token, so
// the only features needed are `{{name}}`, `{{#section}}…{{/section}}` (loop over a list, or show
// when a value is set) and `{{^section}}…{{/section}}` (show when unset or empty). Forty lines keep
// the whole rendering path reviewable, and the token check below is a second line of defence
// behind validation: a value with a space, `#`, quote, backslash or newline can never be written.

export class TemplateError extends Error {
  override name = 'TemplateError';
}

export type View = { [key: string]: Value };
export type Value = string | number | boolean | undefined | View | View[];

const SAFE_TOKEN = /^[A-Za-z0-9._:/@~+=-]*$/;
const TAG = /\{\{\s*([#^/]?)\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}/g;

interface Node {
  text?: string;
  name?: string;
  kind?: '' | '#' | '^';
  children?: Node[];
}

function parse(template: string): Node[] {
  const root: Node[] = [];
  const stack: { name: string; nodes: Node[] }[] = [{ name: '', nodes: root }];
  let last = 0;
  for (const m of template.matchAll(TAG)) {
    const [whole, sigil = '', name = ''] = m;
    let start = m.index;
    let end = start + whole.length;
    const top = stack[stack.length - 1]!;
    // A section tag alone on its line takes the line with it, so loops do not leave blank lines.
    if (sigil !== '') {
      const lineStart = template.lastIndexOf('\n', start - 1) + 1;
      const lineEnd = template.indexOf('\n', end);
      const before = template.slice(lineStart, start);
      const after = template.slice(end, lineEnd === -1 ? template.length : lineEnd);
      if (/^[ \t]*$/.test(before) && /^[ \t]*$/.test(after)) {
        start = lineStart;
        end = lineEnd === -1 ? template.length : lineEnd + 1;
      }
    }
    if (start > last) top.nodes.push({ text: template.slice(last, start) });
    last = end;
    if (sigil === '/') {
      if (top.name !== name) throw new TemplateError(`{{/${name}}} closes {{#${top.name}}}`);
      stack.pop();
    } else if (sigil === '#' || sigil === '^') {
      const node: Node = { name, kind: sigil, children: [] };
      top.nodes.push(node);
      stack.push({ name, nodes: node.children! });
    } else {
      top.nodes.push({ name, kind: '' });
    }
  }
  if (stack.length > 1)
    throw new TemplateError(`{{#${stack[stack.length - 1]!.name}}} is not closed`);
  if (last < template.length) root.push({ text: template.slice(last) });
  return root;
}

function lookup(contexts: View[], name: string): Value {
  for (let i = contexts.length - 1; i >= 0; i--) {
    if (name in contexts[i]!) return contexts[i]![name];
  }
  return undefined;
}

function isSet(v: Value): boolean {
  return Array.isArray(v) ? v.length > 0 : v !== undefined && v !== false && v !== '';
}

function renderNodes(nodes: Node[], contexts: View[], out: string[]): void {
  for (const node of nodes) {
    if (node.text !== undefined) {
      out.push(node.text);
      continue;
    }
    const value = lookup(contexts, node.name!);
    if (node.kind === '') {
      if (typeof value !== 'string' && typeof value !== 'number') {
        throw new TemplateError(`{{${node.name}}} is not a string or number`);
      }
      const s = String(value);
      if (!SAFE_TOKEN.test(s))
        throw new TemplateError(`{{${node.name}}} has characters not allowed in a token`);
      out.push(s);
    } else if (node.kind === '^') {
      if (!isSet(value)) renderNodes(node.children!, contexts, out);
    } else if (Array.isArray(value)) {
      for (const item of value) renderNodes(node.children!, [...contexts, item], out);
    } else if (isSet(value)) {
      const ctx = typeof value === 'object' ? [...contexts, value] : contexts;
      renderNodes(node.children!, ctx, out);
    }
  }
}

/** Renders `template` with `view`; throws TemplateError on a malformed template or an unsafe value. */
export function renderTemplate(template: string, view: View): string {
  const out: string[] = [];
  renderNodes(parse(template), [view], out);
  return out.join('');
}
