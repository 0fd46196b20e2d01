// Each row's serialised JSON, kept by (id, version) so that a list answers unchanged rows without
// serialising them again. The database says which version is current on every request (the
// version column changes on every write, by trigger), so an entry is never trusted by age and
// several instances stay correct; a stale entry is simply never asked for and ages out.
import { LRUCache } from 'lru-cache';
import { z } from 'zod';

export interface RowJsonCache {
  /** The bytes of row `id` at exactly `version`, if kept. */
  get(id: number, version: number): Buffer | undefined;
  set(id: number, version: number, json: Buffer): void;
  /** Forgets row `id` (a deleted message's text is kept nowhere). */
  delete(id: number): void;
  readonly entries: number;
  readonly bytes: number;
}

interface Entry {
  version: number;
  json: Buffer;
}

/** The setting `ROW_CACHE_BYTES` of a service with a row cache, with its default (spread into its config). */
export function rowCacheConfig(defaultBytes: number) {
  return {
    // Bytes of rows' JSON each instance keeps (least recently used go first).
    ROW_CACHE_BYTES: z.coerce
      .number()
      .int()
      .min(1)
      .max(2 ** 31)
      .default(defaultBytes),
  };
}

/** Least recently used entries go first once the kept bytes pass `maxBytes`. */
export function createRowJsonCache(maxBytes: number): RowJsonCache {
  // A row larger than the whole bound is not kept (and its older version goes).
  const cache = new LRUCache<number, Entry>({
    maxSize: maxBytes,
    sizeCalculation: (e) => Math.max(1, e.json.length),
  });

  return {
    get(id, version) {
      // Only a hit on the exact version counts as a use.
      const e = cache.peek(id);
      if (!e || e.version !== version) return undefined;
      cache.get(id);
      return e.json;
    },
    set(id, version, json) {
      cache.set(id, { version, json });
    },
    delete(id) {
      cache.delete(id);
    },
    get entries() {
      return cache.size;
    },
    get bytes() {
      return cache.calculatedSize;
    },
  };
}

const COMMA = Buffer.from(',');

/** `head` + the parts joined by commas + `tail`, as one Buffer. */
export function joinJson(head: string, parts: Buffer[], tail: string): Buffer {
  const chunks: Buffer[] = [Buffer.from(head)];
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) chunks.push(COMMA);
    chunks.push(parts[i] as Buffer);
  }
  chunks.push(Buffer.from(tail));
  return Buffer.concat(chunks);
}
