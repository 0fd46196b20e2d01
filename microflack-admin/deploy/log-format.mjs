// Makes pino's JSON lines readable for mflogs: reads "<instance>\t<line>" lines on stdin and prints
// "<instance> | HH:MM:SS.mmm LEVEL message key=value...". MF_SORT=1 buffers and sorts by time.
import readline from 'node:readline';

const LEVELS = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const COLORS = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[31m' };
const color = process.stdout.isTTY && !process.env.NO_COLOR;
const width = Number(process.env.MF_PREFIX_WIDTH ?? 16);
const OMIT = new Set(['time', 'level', 'msg', 'service', 'instance', 'pid', 'hostname', 'v']);

function format(prefix, line) {
  let rec;
  try {
    rec = line.startsWith('{') ? JSON.parse(line) : undefined;
  } catch {
    rec = undefined;
  }
  const head = `${prefix.padEnd(width)} |`;
  if (!rec || typeof rec !== 'object') return { time: '', text: `${head} ${line}` };
  const time = typeof rec.time === 'string' ? rec.time : new Date(rec.time ?? 0).toISOString();
  const fields = Object.entries(rec)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => {
      if (k === 'err' && v && typeof v === 'object') return `err=${JSON.stringify(v.message ?? v)}`;
      return `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
    });
  const level = LEVELS[rec.level] ?? String(rec.level ?? '');
  const lvl = color && COLORS[rec.level] ? `${COLORS[rec.level]}${level}\x1b[0m` : level;
  return {
    time,
    text: `${head} ${time.slice(11, 23)} ${lvl} ${rec.msg ?? ''} ${fields.join(' ')}`.trimEnd(),
  };
}

const sort = process.env.MF_SORT === '1';
const buffered = [];
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (raw) => {
  const tab = raw.indexOf('\t');
  const out = tab < 0 ? format('', raw) : format(raw.slice(0, tab), raw.slice(tab + 1));
  if (sort) buffered.push(out);
  else process.stdout.write(`${out.text}\n`);
});
rl.on('close', () => {
  // A stable sort keeps each file's lines in order when times tie or are missing.
  buffered.sort((a, b) => (a.time && b.time && a.time !== b.time ? (a.time < b.time ? -1 : 1) : 0));
  for (const out of buffered) process.stdout.write(`${out.text}\n`);
});
process.stdout.on('error', () => process.exit(0));
