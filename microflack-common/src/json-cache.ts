// Each row's serialised JSON, kept by (id, version) so that a list answers unchanged rows without
// serialising them again. The database says which version is current on every request (the
// version column changes on every write, by trigger), so an entry is never trusted by age and
// several instances stay correct; a stale entry is simply never asked for and ages out.

export interface RowJsonCache {
  /** The bytes of row `id` at exactly `version`, if kept. */
  get(id: number, version: number): Buffer | undefined;
  set(id: number, version: number, json: Buffer): void;
  readonly entries: number;
  readonly bytes: number;
}

interface Entry {
  version: number;
  json: Buffer;
}

/** Least recently used entries go first once the kept bytes pass `maxBytes`. */
export function createRowJsonCache(maxBytes: number): RowJsonCache {
  // Map order is insertion order: a hit re-inserts, so the first entries are the least recent.
  const map = new Map<number, Entry>();
  let bytes = 0;

  function remove(id: number, e: Entry): void {
    map.delete(id);
    bytes -= e.json.length;
  }

  return {
    get(id, version) {
      const e = map.get(id);
      if (!e || e.version !== version) return undefined;
      map.delete(id);
      map.set(id, e);
      return e.json;
    },
    set(id, version, json) {
      const old = map.get(id);
      if (old) remove(id, old);
      if (json.length > maxBytes) return;
      map.set(id, { version, json });
      bytes += json.length;
      for (const [oldest, e] of map) {
        if (bytes <= maxBytes) break;
        remove(oldest, e);
      }
    },
    get entries() {
      return map.size;
    },
    get bytes() {
      return bytes;
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
