// Fetches a linked page, safely, and turns its title and description into a preview block.
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { Parser } from 'htmlparser2';
import { isAddressAllowed, type AddressPolicy } from './address-policy.js';
import { escapeHtml } from './render.js';

export interface FetchSettings extends AddressPolicy {
  /** For the whole fetch of one link, redirects included. */
  timeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
}

export const DEFAULT_FETCH_SETTINGS: FetchSettings = {
  allowPrivate: false,
  timeoutMs: 3000,
  maxBytes: 1024 * 1024,
  maxRedirects: 3,
};

/** Why a preview was not made; a normal outcome, logged at debug level. */
export class PreviewError extends Error {
  override name = 'PreviewError';
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_TITLE_CHARS = 300;
const MAX_DESCRIPTION_CHARS = 1000;
const USER_AGENT = 'MicroFlack-LinkPreview/1.0';

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new PreviewError('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new PreviewError('timed out'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Resolves the host and checks every address it has; returns the one to connect to. */
async function resolveAllowed(
  hostname: string,
  policy: AddressPolicy,
  signal: AbortSignal,
): Promise<{ address: string; family: number }> {
  const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  let addresses: dns.LookupAddress[];
  try {
    addresses = await abortable(dns.promises.lookup(host, { all: true, verbatim: true }), signal);
  } catch (err) {
    if (err instanceof PreviewError) throw err;
    throw new PreviewError(
      `cannot resolve host: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  // Every address must pass, or a host listing one public and one private address could pick either.
  if (addresses.length === 0 || !addresses.every((a) => isAddressAllowed(a.address, policy))) {
    throw new PreviewError('address not allowed');
  }
  return addresses[0] as dns.LookupAddress;
}

/** A lookup that answers only the checked address, so a second DNS answer cannot swap it. */
function pinnedLookup(address: string, family: number): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all)
      (callback as (e: null, a: dns.LookupAddress[]) => void)(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

function get(
  url: URL,
  address: { address: string; family: number },
  signal: AbortSignal,
): Promise<http.IncomingMessage> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, {
      method: 'GET',
      agent: false,
      signal,
      lookup: pinnedLookup(address.address, address.family),
      headers: {
        'User-Agent': USER_AGENT,
        Accept: 'text/html,application/xhtml+xml',
        'Accept-Encoding': 'identity',
      },
    });
    req.once('response', resolve);
    req.once('error', (err) =>
      reject(
        signal.aborted
          ? new PreviewError('timed out')
          : new PreviewError(`request failed: ${err.message}`),
      ),
    );
    req.end();
  });
}

/** Reads at most maxBytes, then stops the transfer: a huge page costs no more than that. */
function readCapped(
  res: http.IncomingMessage,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      const room = maxBytes - size;
      chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
      size += Math.min(chunk.length, room);
      if (size >= maxBytes) {
        finish();
        res.destroy();
      }
    });
    res.once('end', () => finish());
    res.once('error', () =>
      finish(new PreviewError(signal.aborted ? 'timed out' : 'connection lost')),
    );
    res.once('close', () => finish(res.complete ? undefined : new PreviewError('connection lost')));
  });
}

function charsetOf(contentType: string): string {
  for (const part of contentType.split(';').slice(1)) {
    const [key, value] = part.split('=');
    if (key?.trim().toLowerCase() === 'charset' && value) return value.trim().replaceAll('"', '');
  }
  return 'utf-8';
}

function decode(body: Buffer, contentType: string): string {
  try {
    return new TextDecoder(charsetOf(contentType)).decode(body);
  } catch {
    return new TextDecoder('utf-8').decode(body);
  }
}

/** GETs an http(s) page, following at most maxRedirects, each hop checked like the first. */
export async function fetchPage(
  url: string,
  settings: FetchSettings,
  signal?: AbortSignal,
): Promise<string> {
  const deadline = AbortSignal.timeout(settings.timeoutMs);
  const sig = signal ? AbortSignal.any([deadline, signal]) : deadline;
  let current: URL;
  try {
    current = new URL(url);
  } catch {
    throw new PreviewError('not a URL');
  }
  for (let redirects = 0; ; redirects++) {
    if (current.protocol !== 'http:' && current.protocol !== 'https:')
      throw new PreviewError('scheme not allowed');
    const address = await resolveAllowed(current.hostname, settings, sig);
    const res = await get(current, address, sig);
    const status = res.statusCode ?? 0;
    if (REDIRECTS.has(status)) {
      res.destroy();
      if (redirects >= settings.maxRedirects) throw new PreviewError('too many redirects');
      const location = res.headers.location;
      if (!location) throw new PreviewError('redirect without a location');
      try {
        current = new URL(location, current);
      } catch {
        throw new PreviewError('bad redirect location');
      }
      continue;
    }
    if (status !== 200) {
      res.destroy();
      throw new PreviewError(`status ${status}`);
    }
    const contentType = res.headers['content-type'] ?? 'text/html';
    const encoding = res.headers['content-encoding'];
    if (!contentType.toLowerCase().includes('html') || (encoding && encoding !== 'identity')) {
      res.destroy();
      throw new PreviewError('not an HTML page');
    }
    return decode(await readCapped(res, settings.maxBytes, sig), contentType);
  }
}

function tidy(text: string, maxChars: number): string {
  const oneLine = text.split(/\s+/).filter(Boolean).join(' ');
  return oneLine.length > maxChars ? `${oneLine.slice(0, maxChars - 1)}…` : oneLine;
}

/** The page's first <title> and its meta description, entities decoded, whitespace collapsed. */
export function parsePage(html: string): { title?: string; description?: string } {
  let title: string | undefined;
  let titleText: string | undefined;
  let description: string | undefined;
  const parser = new Parser(
    {
      onopentag(name, attribs) {
        if (name === 'title' && title === undefined) titleText = '';
        if (
          name === 'meta' &&
          description === undefined &&
          attribs.name?.toLowerCase() === 'description'
        ) {
          description = attribs.content;
        }
      },
      ontext(text) {
        if (titleText !== undefined) titleText += text;
      },
      onclosetag(name) {
        if (name === 'title' && titleText !== undefined) {
          title = titleText;
          titleText = undefined;
        }
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.write(html);
  parser.end();
  const t = title === undefined ? '' : tidy(title, MAX_TITLE_CHARS);
  const d = description === undefined ? '' : tidy(description, MAX_DESCRIPTION_CHARS);
  return { title: t || undefined, description: d || undefined };
}

/** The block appended to a message; as the original, the URL stands in for a missing title. */
export function previewBlock(url: string, page: { title?: string; description?: string }): string {
  const href = escapeHtml(url);
  const title = escapeHtml(page.title ?? url);
  const description = escapeHtml(page.description ?? 'No description found.');
  return `<blockquote><p><a href="${href}">${title}</a></p><p>${description}</p></blockquote>`;
}

/** The preview of one link, or a PreviewError saying why there is none. */
export async function fetchPreview(
  url: string,
  settings: FetchSettings,
  signal?: AbortSignal,
): Promise<string> {
  return previewBlock(url, parsePage(await fetchPage(url, settings, signal)));
}

function isHttpUrl(href: string): boolean {
  try {
    const { protocol } = new URL(href);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}

/** The http(s) links of rendered message html, in order, without repeats. */
export function linksOf(html: string, max: number): string[] {
  const links: string[] = [];
  const parser = new Parser(
    {
      onopentag(name, attribs) {
        const href = attribs.href;
        if (name !== 'a' || !href || links.length >= max || links.includes(href)) return;
        if (isHttpUrl(href)) links.push(href);
      },
    },
    { decodeEntities: true },
  );
  parser.write(html);
  parser.end();
  return links;
}
