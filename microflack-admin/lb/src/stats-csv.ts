// HAProxy's stats CSV (`show stat` on the admin socket, `/stats;csv` over HTTP) as rows of named
// fields. The one parser of it: the configurator reads server health with it, tests read sessions.

export type StatsRow = Record<string, string>;

/** Every row of the CSV, keyed by the header's column names (pxname, svname, status, scur, ...). */
export function parseStatsCsv(csv: string): StatsRow[] {
  const [head, ...lines] = csv.trim().split('\n');
  const cols = (head ?? '').replace(/^# /, '').split(',');
  return lines
    .filter((line) => line !== '')
    .map((line) => {
      const f = line.split(',');
      return Object.fromEntries(cols.map((c, i) => [c, f[i] ?? '']));
    });
}

/** The rows of servers: not the FRONTEND and BACKEND summary rows. */
export function serverRows(csv: string): StatsRow[] {
  return parseStatsCsv(csv).filter(
    (r) =>
      r.svname !== undefined &&
      r.svname !== '' &&
      r.svname !== 'FRONTEND' &&
      r.svname !== 'BACKEND',
  );
}
