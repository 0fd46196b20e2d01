// Renders `etcdctl get --write-out=json` (stdin) as an indented tree, or as {key: value} JSON.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';

// Lease ids are 64-bit: quote them before JSON.parse rounds them.
const input = readFileSync(0, 'utf8')
  .trim()
  .replace(/"lease":(\d+)/g, '"lease":"$1"');
const kvs = input ? (JSON.parse(input).kvs ?? []) : [];
const decode = (b64) => Buffer.from(b64 ?? '', 'base64').toString('utf8');
const entries = kvs
  .map((kv) => ({
    key: decode(kv.key),
    value: decode(kv.value),
    lease: kv.lease ? BigInt(kv.lease) : 0n,
  }))
  .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

if (process.env.MF_JSON === '1') {
  console.log(JSON.stringify(Object.fromEntries(entries.map((e) => [e.key, e.value])), null, 2));
  process.exit(0);
}
if (entries.length === 0) {
  console.log('(no keys)');
  process.exit(0);
}
let previous = [];
for (const { key, value, lease } of entries) {
  const parts = key.split('/').filter((p) => p !== '');
  // Print the folders this key opens that the previous key had not.
  let same = 0;
  while (same < parts.length - 1 && previous[same] === parts[same]) same++;
  for (let i = same; i < parts.length - 1; i++) console.log(`${'  '.repeat(i)}${parts[i]}/`);
  const leaf = parts[parts.length - 1] ?? key;
  const shown = value.length > 120 ? `${value.slice(0, 117)}...` : value;
  const suffix = lease ? `  (lease ${lease.toString(16)})` : '';
  console.log(`${'  '.repeat(parts.length - 1)}${leaf} = ${JSON.stringify(shown)}${suffix}`);
  previous = parts.slice(0, -1);
}
